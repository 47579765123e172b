"""A real OpenID provider on loopback for the tests of OAuth sign-in: the npm package `oidc-provider` run by `idp.js`.

    with IdentityProvider({"http://127.0.0.1:8000/mcp": Resource()}) as idp:   # JWT access tokens for that resource
        tokens = await token_for(idp, "alice", "http://127.0.0.1:8000/mcp")    # a plain code + PKCE login, by httpx
        auth = oauth_client("http://127.0.0.1:8000/mcp", "alice", idp)         # or the SDK's own (sdk_client.py):
        async with httpx2.AsyncClient(auth=auth) as http, Client(streamable_http_client(url, http_client=http)):
            ...

The browser step is done by HTTP requests (`sign_in`): the provider's development login form takes any
account name configured here (no password is checked), then its consent form is confirmed. Nothing here mints a
token: every token comes from the provider's endpoints.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import html
import json
import queue
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import httpx2
from mcp.shared.auth import OAuthClientInformationFull

from tests.interop.npm import node22_bin_dir, node_major, npm_package

OIDC_PROVIDER = ("oidc-provider", "9.13.3")  # 9.x asks for Node 22 or later
IDP_JS = Path(__file__).with_name("idp.js")
REDIRECT_URI = "http://127.0.0.1/callback"  # never requested: `sign_in` stops at the redirect to it
START_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Account:
    email: str
    groups: tuple[str, ...] = ()


ACCOUNTS = {
    "alice": Account("alice@example.com", ("engineering", "admins")),
    "bob": Account("bob@example.com", ("sales",)),
}


@dataclass(frozen=True)
class Resource:
    """How the provider issues access tokens for one RFC 8707 resource (its `aud`)."""

    format: Literal["jwt", "opaque"] = "jwt"  # JWTs (RFC 9068) cannot be introspected or revoked; opaque ones can
    scope: str = "mcp"  # the scopes its tokens may carry (of those the client asks for)


@dataclass(frozen=True)
class OAuthClient:
    """A client registered at the provider: public when it has no secret (then it must use PKCE)."""

    client_id: str
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,)
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    secret_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"

    @property
    def auth_method(self) -> str:
        return self.secret_method if self.client_secret else "none"

    def metadata(self) -> dict[str, Any]:
        """Its metadata as `oidc-provider` takes it (and as RFC 7591 registration sends it, less the id and secret)."""
        said: dict[str, Any] = {
            "client_id": self.client_id,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": list(self.grant_types),
            "response_types": ["code"] if "authorization_code" in self.grant_types else [],
            "token_endpoint_auth_method": self.auth_method,
        }
        if self.client_secret:
            said["client_secret"] = self.client_secret
        return said

    def information(self) -> OAuthClientInformationFull:
        """The SDK's record of this client, for an SDK OAuth client that is pre-registered rather than registering."""
        return OAuthClientInformationFull.model_validate(self.metadata())


PUBLIC_CLIENT = OAuthClient("test-public")
CONFIDENTIAL_CLIENT = OAuthClient("test-confidential", "test-confidential-secret")
# A resource server's client: no grant, only introspection (and the gateway's own checks of tokens).
RESOURCE_SERVER_CLIENT = OAuthClient("test-resource-server", "test-resource-server-secret", (), ())
CLIENTS = (PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, RESOURCE_SERVER_CLIENT)


class IdentityProviderError(RuntimeError):
    pass


@functools.cache
def _node_22() -> str:
    """A `node` of version 22 or later: PATH's, or the pinned one `tests/interop/npm.py` installs."""
    node = shutil.which("node")
    if node is not None and node_major() >= 22:
        return node
    return str(node22_bin_dir() / "node")


class IdentityProvider:
    """`oidc-provider` on 127.0.0.1 as a child process (a context manager; `start()` / `stop()` otherwise).

    `resources` maps each resource URL a client may ask for (RFC 8707 `resource`) to how its tokens are made;
    a plain list of URLs gets JWT access tokens. The first one is the default when a client names none.
    Tokens carry the account's `email` and `groups` (JWT claims, or members of the introspection answer).
    """

    def __init__(
        self,
        resources: Mapping[str, Resource] | Iterable[str] = (),
        *,
        accounts: Mapping[str, Account] = ACCOUNTS,
        clients: Iterable[OAuthClient] = CLIENTS,
        access_token_ttl: int = 60,
        port: int = 0,
        jwks_file: Path | None = None,
    ) -> None:
        self.resources = dict(resources) if isinstance(resources, Mapping) else {url: Resource() for url in resources}
        self.accounts = dict(accounts)
        self.clients = {client.client_id: client for client in clients}
        self.access_token_ttl = access_token_ttl
        self.port = port
        self.jwks_file = jwks_file
        self.issuer = ""
        self.kids: list[str] = []  # the signing keys' ids, the one signing first
        self.metadata: dict[str, Any] = {}  # the discovery document
        self._process: subprocess.Popen[str] | None = None
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> IdentityProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> IdentityProvider:
        package = npm_package(*OIDC_PROVIDER)
        node = _node_22()
        self._dir = tempfile.TemporaryDirectory(prefix="mcp-gateway-idp-")
        config = Path(self._dir.name) / "config.json"
        config.write_text(json.dumps({
            "oidc_provider": str(package),
            "port": self.port,
            "accounts": {name: {"email": a.email, "groups": list(a.groups)} for name, a in self.accounts.items()},
            "resources": {url: {"format": r.format, "scope": r.scope} for url, r in self.resources.items()},
            "access_token_ttl": self.access_token_ttl,
            "clients": [client.metadata() for client in self.clients.values()],
            **({"jwks_file": str(self.jwks_file)} if self.jwks_file else {}),
        }))
        self._stderr_path = Path(self._dir.name) / "stderr.log"
        with self._stderr_path.open("w") as stderr:
            self._process = subprocess.Popen([node, str(IDP_JS), str(config)], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert self._process.stdout is not None
        threading.Thread(target=_read_events, args=(self._process.stdout, self._events), daemon=True).start()
        try:
            ready = self._next_event(START_TIMEOUT_S, "start")
            self.issuer, self.kids = ready["issuer"], ready["kids"]
            self.port = int(urlsplit(self.issuer).port or 0)
            self.metadata = httpx2.get(f"{self.issuer}/.well-known/openid-configuration").raise_for_status().json()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close its stdin (it exits then); terminated, then killed, if it has not within a few seconds."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def rotate_keys(self, keep_old: bool = True) -> list[str]:
        """A new RS256 key signs from now on, first in the JWKS; the old ones stay published (for tokens already
        issued) unless `keep_old` is false. Grants, tokens and registered clients survive. Returns the key ids."""
        self.kids = self._command({"command": "rotate_keys", "keep_old": keep_old})["kids"]
        return self.kids

    def add_resource(self, url: str, resource: Resource = Resource()) -> None:
        """One more resource clients may ask tokens for (e.g. a server whose port was not known at start)."""
        self._command({"command": "add_resource", "url": url, "format": resource.format, "scope": resource.scope})
        self.resources[url] = resource

    def register_client(self, client: OAuthClient | None = None) -> OAuthClient:
        """Register a client by RFC 7591 dynamic registration (open at this provider); returns it with the id and
        secret the provider gave. `client`: the metadata to ask for (its id and secret are ignored)."""
        asked = (client or OAuthClient("")).metadata()
        for given in ("client_id", "client_secret"):
            asked.pop(given, None)
        response = httpx2.post(self.metadata["registration_endpoint"], json=asked)
        if response.status_code != 201:
            raise IdentityProviderError(f"registration refused ({response.status_code}): {response.text}")
        said = response.json()
        method = said.get("token_endpoint_auth_method")
        registered = OAuthClient(said["client_id"], said.get("client_secret"), tuple(said["redirect_uris"]),
                                 tuple(said["grant_types"]), secret_method="client_secret_post"
                                 if method == "client_secret_post" else "client_secret_basic")
        self.clients[registered.client_id] = registered
        return registered

    def client(self, client: OAuthClient | str) -> OAuthClient:
        return client if isinstance(client, OAuthClient) else self.clients[client]

    def jwks(self) -> dict[str, Any]:
        """The public keys the provider publishes now (its `jwks_uri`)."""
        return dict(httpx2.get(self.metadata["jwks_uri"]).raise_for_status().json())

    def stderr_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError, AttributeError):
            return self._stderr_path.read_text(errors="replace")[-chars:]
        return ""

    def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        if self._process is None or self._process.stdin is None:
            raise IdentityProviderError("the provider is not running")
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        return self._next_event(COMMAND_TIMEOUT_S, command["command"])

    def _next_event(self, timeout_s: float, doing: str) -> dict[str, Any]:
        try:
            event = self._events.get(timeout=timeout_s)
        except queue.Empty:
            event, why = None, f"no answer within {timeout_s:g} s"
        else:
            why = "the process ended" if event is None else str(event.get("error"))
        if event is None or "error" in event:
            raise IdentityProviderError(f"oidc-provider ({doing}): {why}; its stderr ends:\n{self.stderr_tail()}")
        return event


def _read_events(stdout: IO[str], events: queue.Queue[dict[str, Any] | None]) -> None:
    """The JSON lines `idp.js` prints, then None at its end (anything else on stdout is skipped)."""
    for line in stdout:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.put(event)
    events.put(None)


class SignInError(RuntimeError):
    pass


_PROMPT = re.compile(r'<input type="hidden" name="prompt" value="([a-z]+)"')
_FORM_ACTION = re.compile(r'<form[^>]*\saction="([^"]+)"')


async def sign_in(http: httpx.AsyncClient | httpx2.AsyncClient, authorize_url: str, user: str) -> str:
    """The browser's part of a login, by HTTP requests: open `authorize_url`, follow the provider's redirects,
    fill its login form with `user` and confirm its consent form. Returns the URL the provider finally redirects
    to (the client's redirect_uri with `code`, `state` and `iss`, or with `error`) without requesting it.

    `http` keeps the provider's cookies: a client that has signed in before is not asked to log in again."""
    redirect_uri = parse_qs(urlsplit(authorize_url).query).get("redirect_uri", [""])[0]
    provider = urlsplit(authorize_url).netloc
    method, url, form = "GET", authorize_url, None
    logged_in = False
    for _ in range(20):
        response = await http.request(method, url, data=form, follow_redirects=False)
        if response.is_redirect:
            location = urljoin(url, response.headers["location"])
            if (redirect_uri and location.startswith(redirect_uri)) or urlsplit(location).netloc != provider:
                return location
            method, url, form = "GET", location, None
            continue
        page = response.text
        prompt, action = _PROMPT.search(page), _FORM_ACTION.search(page)
        if response.status_code != 200 or prompt is None or action is None:
            after = f" after the login as {user!r} (an account of the provider?)" if logged_in else ""
            raise SignInError(f"no login or consent form at {url} ({response.status_code}){after}: {_page_text(page)}")
        if prompt.group(1) == "login":
            if logged_in:
                raise SignInError(f"the provider asked for a login again after the login as {user!r}")
            logged_in = True
            form = {"prompt": "login", "login": user, "password": "not checked"}
        else:
            form = {"prompt": prompt.group(1)}  # "consent": grant what the client asked for
        method, url = "POST", urljoin(url, html.unescape(action.group(1)))
    raise SignInError(f"no redirect to the client after 20 steps, at {url}")


def _page_text(page: str) -> str:
    text = re.sub(r"<style.*?</style>|<[^>]+>", " ", page, flags=re.DOTALL)
    return " ".join(html.unescape(text).split())[:500]


def pkce() -> tuple[str, str]:
    """A PKCE (RFC 7636) verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def _post(idp: IdentityProvider, endpoint: str, client: OAuthClient | str,
                form: dict[str, str]) -> httpx2.Response:
    """A form posted to the token, introspection or revocation endpoint, authenticated as `client` is registered."""
    registered = idp.client(client)
    async with httpx2.AsyncClient() as http:
        if registered.auth_method == "client_secret_basic":
            assert registered.client_secret is not None
            auth = httpx2.BasicAuth(registered.client_id, registered.client_secret)
            return await http.post(idp.metadata[endpoint], data=form, auth=auth)
        if registered.auth_method == "client_secret_post":
            assert registered.client_secret is not None
            form = {**form, "client_secret": registered.client_secret}
        return await http.post(idp.metadata[endpoint], data={**form, "client_id": registered.client_id})


async def token_for(idp: IdentityProvider, user: str, resource: str, *, client: OAuthClient | str = PUBLIC_CLIENT,
                    scope: str = "openid mcp") -> dict[str, Any]:
    """A login of `user` by `client` (authorization code + PKCE, by plain HTTP) for an access token to `resource`.
    Returns the token response: `access_token`, `refresh_token`, `expires_in`, `scope`, `id_token` (with `openid`)."""
    registered = idp.client(client)
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(16)
    query = {"response_type": "code", "client_id": registered.client_id, "redirect_uri": registered.redirect_uris[0],
             "scope": scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
             "resource": resource}
    async with httpx2.AsyncClient() as browser:
        redirect = await sign_in(browser, f"{idp.metadata['authorization_endpoint']}?{urlencode(query)}", user)
    answer = {key: values[0] for key, values in parse_qs(urlsplit(redirect).query).items()}
    if "code" not in answer or answer.get("state") != state or answer.get("iss") != idp.issuer:
        raise SignInError(f"the provider redirected to {redirect}")
    response = await _post(idp, "token_endpoint", registered, {
        "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": registered.redirect_uris[0],
        "code_verifier": verifier, "resource": resource})
    if response.status_code != 200:
        raise SignInError(f"the token request failed ({response.status_code}): {response.text}")
    return dict(response.json())


async def refresh(idp: IdentityProvider, refresh_token: str, *, client: OAuthClient | str = PUBLIC_CLIENT,
                  resource: str | None = None) -> httpx2.Response:
    """The refresh-token grant (the response as it is: a test may expect a refusal)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await _post(idp, "token_endpoint", client, {**form, "resource": resource} if resource else form)


async def introspect(idp: IdentityProvider, token: str, *,
                     client: OAuthClient | str = RESOURCE_SERVER_CLIENT) -> dict[str, Any]:
    """RFC 7662 introspection (of an opaque access token or a refresh token: JWTs are refused by the provider)."""
    response = await _post(idp, "introspection_endpoint", client, {"token": token})
    if response.status_code != 200:
        raise IdentityProviderError(f"introspection failed ({response.status_code}): {response.text}")
    return dict(response.json())


async def revoke(idp: IdentityProvider, token: str, *, client: OAuthClient | str = PUBLIC_CLIENT) -> None:
    """RFC 7009 revocation, by the client the token was issued to (revoking a refresh token revokes its grant)."""
    response = await _post(idp, "revocation_endpoint", client, {"token": token})
    if response.status_code != 200:
        raise IdentityProviderError(f"revocation failed ({response.status_code}): {response.text}")
