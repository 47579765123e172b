"""Callers who sign in with the organisation's OAuth 2.1 / OpenID provider: their bearer tokens checked.

The gateway is a protected resource (MCP authorization, RFC 9728): a token is accepted only when the
configured issuer signed it (JWT, checked against the provider's published keys, which are fetched
again when a token names a key not yet seen: key rotation) or says it is active (RFC 7662
introspection), it has not expired, and its audience is this gateway. A provider that cannot be
reached makes the request fail (503), never pass.

Introspection is bounded (`introspection.py`: answers and refusals remembered, one introspection per token
at a time, a few in flight); the metadata is fetched by one request at a time; every request to the provider
goes through `fetch.py` (answers capped, a deadline of `DEADLINE_S` for each).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx2
import structlog
from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from ..config import SignInSettings
from ..errors import describe_exception
from .errors import SignInUnavailable as SignInUnavailable
from .errors import TokenRefused as TokenRefused
from .fetch import ANSWER_MAX_BYTES, DOCUMENT_MAX_BYTES, TOKEN_MAX_CHARS, BoundedClient, fetch
from .introspection import Introspections
from .metadata import MetadataError, provider_metadata

log = structlog.get_logger("mcp_gateway.sign_in")

REFETCH_S = 5.0
"""The provider's keys are fetched again for an unknown key id at most this often (a token with a made-up
key id must not make the gateway hammer the provider)."""
RETRY_S = 1.0
"""After the provider could not be reached, requests are refused for this long before it is tried again."""
KEYS_MAX_AGE_S = 600.0
DEADLINE_S = 5.0
"""The longest one request to the provider may take, whole (its metadata, keys, introspection, token)."""


class SignIn:
    """Checks the bearer tokens of signed-in callers; `claims(token)` gives the claims of a valid one."""

    def __init__(self, settings: SignInSettings) -> None:
        self.settings = settings
        self.audience = settings.audience or settings.resource
        self._http: BoundedClient | None = None
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = -REFETCH_S
        self._down_until = 0.0
        self._lock = anyio.Lock()
        self._metadata_lock = anyio.Lock()
        self._introspections = Introspections()

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of `token`; raises `TokenRefused`, or `SignInUnavailable` when the provider cannot say."""
        if len(token) > TOKEN_MAX_CHARS:
            raise TokenRefused(f"longer than the {TOKEN_MAX_CHARS // 1024} KiB this gateway accepts")
        if self.settings.tokens == "introspection":
            found = await self._introspected(token)
        else:
            found = await self._verified(token)
        self._check_scopes(found)
        return found

    async def provider(self) -> dict[str, Any]:
        """The provider's metadata (read once); raises `SignInUnavailable`."""
        return await self._provider()

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The access token for this gateway that a browser login's `code` buys, with the gateway's own client
        (`client_id`, `client_secret`); raises `TokenRefused` when the provider refuses it."""
        endpoint = (await self._provider()).get("token_endpoint")
        if not isinstance(endpoint, str):
            raise SignInUnavailable(f"the provider {self.settings.issuer} publishes no token_endpoint")
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": redirect_uri, "resource": self.settings.resource}
        try:
            answer = await self._fetch("POST", endpoint, data=form, max_bytes=ANSWER_MAX_BYTES)
        except SignInUnavailable as exc:
            raise TokenRefused(f"not given by the provider ({exc})") from None
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise TokenRefused("not in the provider's answer")
        return token

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- JWT access tokens -------------------------------------------------------------------------

    async def _verified(self, token: str) -> dict[str, Any]:
        if token.count(".") != 2:
            raise TokenRefused("not a JWT")
        keys = await self._key_set(refetch=False)
        try:
            decoded = self._decode(token, keys)
        except InvalidKeyIdError:  # a key the provider may have added since: rotation
            try:
                decoded = self._decode(token, await self._key_set(refetch=True))
            except InvalidKeyIdError:
                raise TokenRefused("signed with a key the provider does not publish") from None
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=self.settings.leeway_s,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenRefused(_claim_problem(exc)) from None
        return claims

    def _decode(self, token: str, keys: KeySet) -> jwt.Token:
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError):
            raise TokenRefused("not a readable JWT") from None
        candidates: list[Any] = [keys] if "kid" in header else list(keys.keys)  # no key id: try each key
        problem = "no published key verifies it"
        for key in candidates:
            try:
                return jwt.decode(token, key, algorithms=self.settings.algorithms)
            except InvalidKeyIdError:
                raise
            except JoseError as exc:
                problem = _signature_problem(exc)
        raise TokenRefused(problem)

    async def _key_set(self, *, refetch: bool) -> KeySet:
        """The provider's signing keys: fetched once, again every `KEYS_MAX_AGE_S` (a key the provider
        withdrew stops being trusted) and for an unknown key id (at most every `REFETCH_S`)."""
        async with self._lock:
            age = time.monotonic() - self._keys_at
            if self._keys is not None and age < (REFETCH_S if refetch else KEYS_MAX_AGE_S):
                return self._keys
            try:
                self._keys = await self._fetch_keys()
            except SignInUnavailable as exc:
                if self._keys is None or refetch:
                    raise
                log.warning("sign-in keys not refreshed: the ones fetched before are used", error=str(exc))
                return self._keys
            self._keys_at = time.monotonic()
            log.info("sign-in keys fetched", issuer=self.settings.issuer, keys=[k.kid for k in self._keys.keys])
            return self._keys

    async def _fetch_keys(self) -> KeySet:
        metadata = await self._provider()
        uri = metadata.get("jwks_uri")
        if not isinstance(uri, str):
            raise SignInUnavailable(f"the provider {self.settings.issuer} publishes no jwks_uri")
        document = await self._fetch("GET", uri, max_bytes=DOCUMENT_MAX_BYTES)
        published = [k for k in document.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        try:
            return KeySet.import_key_set({"keys": published})
        except (JoseError, ValueError, TypeError) as exc:
            raise SignInUnavailable(f"the provider's keys ({uri}) cannot be read: {exc}") from None

    # -- opaque tokens: RFC 7662 introspection ---------------------------------------------------------

    async def _introspected(self, token: str) -> dict[str, Any]:
        return await self._introspections.answer(token, self._introspect)

    async def _introspect(self, token: str) -> tuple[dict[str, Any], float]:
        """The provider's answer for a valid token, and until when it may be reused; raises `TokenRefused`."""
        metadata = await self._provider()
        endpoint = metadata.get("introspection_endpoint")
        if not isinstance(endpoint, str):
            raise SignInUnavailable(f"the provider {self.settings.issuer} publishes no introspection_endpoint")
        answer = await self._fetch("POST", endpoint, data={"token": token, "token_type_hint": "access_token"},
                                   max_bytes=ANSWER_MAX_BYTES)
        now = time.time()
        if answer.get("active") is not True:
            raise TokenRefused("the provider says it is not active (expired or revoked)")
        expires = answer.get("exp")
        if not isinstance(expires, int | float) or expires + self.settings.leeway_s < now:
            raise TokenRefused("expired")
        if answer.get("iss", self.settings.issuer) != self.settings.issuer:
            raise TokenRefused("issued by another provider")
        audience = answer.get("aud")
        if self.audience not in ([audience] if isinstance(audience, str) else audience or []):
            raise TokenRefused("issued for another resource (aud)")
        if not isinstance(answer.get("sub"), str):
            raise TokenRefused("names no subject")
        return answer, min(now + self.settings.cache_s, float(expires))

    # -- the provider ----------------------------------------------------------------------------------

    async def _provider(self) -> dict[str, Any]:
        """The metadata, read once (by one request: the others wait for it)."""
        if self._metadata is not None:
            return self._metadata
        async with self._metadata_lock:
            if self._metadata is None:
                self._refuse_while_down()
                try:  # the client's cap is DOCUMENT_MAX_BYTES
                    self._metadata = await provider_metadata(self._client(), self.settings.issuer)
                except MetadataError as exc:
                    self._down_until = time.monotonic() + RETRY_S
                    raise SignInUnavailable(str(exc)) from None
            return self._metadata

    async def _fetch(self, method: str, url: str, *, max_bytes: int,
                     data: dict[str, str] | None = None) -> dict[str, Any]:
        self._refuse_while_down()
        auth = httpx2.BasicAuth(self.settings.client_id or "", self.settings.client_secret or "") \
            if data is not None else None
        try:
            response = await fetch(self._client(), method, url, max_bytes=max_bytes, data=data, auth=auth)
        except httpx2.HTTPError as exc:
            self._down_until = time.monotonic() + RETRY_S
            raise SignInUnavailable(f"{url}: {describe_exception(exc)}") from None
        if response.status_code != 200:
            raise SignInUnavailable(f"{url}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise SignInUnavailable(f"{url}: not JSON") from None
        if not isinstance(body, dict):
            raise SignInUnavailable(f"{url}: not a JSON object")
        return body

    def _refuse_while_down(self) -> None:
        if time.monotonic() < self._down_until:
            raise SignInUnavailable(f"the provider {self.settings.issuer} did not answer a moment ago")

    def _client(self) -> BoundedClient:
        if self._http is None:
            self._http = BoundedClient(max_bytes=DOCUMENT_MAX_BYTES, deadline_s=DEADLINE_S)
        return self._http

    def _check_scopes(self, claims: dict[str, Any]) -> None:
        granted = claims.get("scope", claims.get("scp", ""))
        have = set(granted.split() if isinstance(granted, str) else granted if isinstance(granted, list) else [])
        missing = [s for s in self.settings.scopes if s not in have]
        if missing:
            raise TokenRefused(f"lacks the scope {', '.join(missing)}")


def _claim_problem(exc: JoseError) -> str:
    text = str(exc)
    for claim, problem in (("'exp'", "expired"), ("'nbf'", "not valid yet"), ("'iat'", "issued in the future"),
                           ("'aud'", "issued for another resource (aud)"), ("'iss'", "issued by another provider"),
                           ("'sub'", "names no subject")):
        if claim in text:
            return problem
    return f"its claims are not valid ({exc.error})"


def _signature_problem(exc: JoseError) -> str:
    if exc.error == "unsupported_algorithm":
        return "signed with an algorithm this gateway does not accept"
    if exc.error == "bad_signature":
        return "its signature does not verify"
    return f"cannot be verified ({exc.error})"
