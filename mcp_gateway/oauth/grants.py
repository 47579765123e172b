"""The OAuth tokens the gateway holds for upstreams: read, refreshed and written through the store, sealed.

One grant per (server, owner): owner "" is the shared login, `user:<sub>` a signed-in user, `key:<name>` an
API key's own login. Every replica reads the same rows, so a login made through one serves all. Tokens are
refreshed a minute before they expire (a quarter of a shorter life), under a lock of the store's so that two
replicas never spend one refresh token: the second reads the tokens the first stored. A refused refresh
forgets the grant: the next use asks for a new login (`LoginRequired`), never a dead upstream.

Every request to an authorization server goes through `fetch.py` (answers capped, a deadline for the whole
exchange, shorter than the store's lock wait); tokens over `TOKEN_MAX_CHARS` are refused before they are
sealed. Opened grants are kept in memory (`MAX_OPENED`, by server and owner) while the store holds the same
sealed bytes, so a call does not decrypt and parse its grant again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import structlog
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata, OAuthToken
from pydantic import ValidationError

from ..config import GatewayConfig
from ..governance.identity import Identity
from ..storage import Storage
from .errors import LoginRequired, TokenRequestError
from .fetch import KIB, TOKEN_MAX_CHARS, BoundedClient, OutboundError, describe, fetch
from .vault import Vault, VaultError

log = structlog.get_logger("mcp_gateway.oauth")

SHARED = ""
"""The owner of a shared login: it serves every caller."""


def owner_of(identity: Identity) -> str:
    """Whose login a caller's calls use on a per-user upstream: the caller's principal (a signed-in user's `sub`,
    else the key's name)."""
    return identity.principal


REFRESH_MARGIN_S = 60.0
"""Tokens are refreshed this long before they expire (at most)."""
MAX_OPENED = 512
"""Opened grants kept in memory (the least recently used go first)."""
SEALED_MAX_BYTES = 128 * KIB
"""A stored grant larger than this is not opened (tokens within `TOKEN_MAX_CHARS` seal to far less): one
stored before the cap existed, from a hostile authorization server, is forgotten instead."""
OPEN_IN_THREAD_FROM = 16 * KIB
"""Sealed grants from this size on are decrypted and parsed in a worker thread, off the event loop."""


@dataclass(frozen=True)
class Registration:
    """The gateway's client at an upstream's authorization server, and where that server is."""

    client: OAuthClientInformationFull
    metadata: OAuthMetadata
    resource: str
    scope: str | None = None
    """What a login asks for: the configured scopes, else those the upstream names (and `offline_access`
    where the server knows it, for a refresh token)."""

    def dump(self) -> dict[str, Any]:
        return {"client": self.client.model_dump(mode="json", exclude_none=True),
                "metadata": self.metadata.model_dump(mode="json", exclude_none=True), "resource": self.resource,
                "scope": self.scope}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Registration:
        return cls(OAuthClientInformationFull.model_validate(data["client"]),
                   OAuthMetadata.model_validate(data["metadata"]), str(data["resource"]), data.get("scope"))


@dataclass(frozen=True)
class Grant:
    tokens: OAuthToken
    expires_at: float | None

    def due(self) -> bool:
        """Whether to refresh before use: within a minute of expiry (a quarter of a shorter lifetime)."""
        if self.expires_at is None:
            return False
        margin = min(REFRESH_MARGIN_S, (self.tokens.expires_in or 0) / 4)
        return time.time() >= self.expires_at - margin


class Grants:
    """Sealed tokens and client registrations in the store, and the token requests that renew them."""

    def __init__(self, storage: Storage, vault: Vault, http: BoundedClient) -> None:
        self.storage = storage
        self.vault = vault
        self.http = http
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        self._opened: OrderedDict[tuple[str, str], tuple[bytes, Grant]] = OrderedDict()
        """(server, owner) -> (the SHA-256 of the sealed grant it was opened from, the grant)."""

    async def registration(self, server: str) -> Registration | None:
        sealed = await self.storage.get_oauth_client(server)
        if sealed is None:
            return None
        data = self._open(sealed, f"client:{server}", server)
        return Registration.load(data) if data is not None else None

    async def save_registration(self, server: str, registration: Registration) -> None:
        sealed = self.vault.seal(json.dumps(registration.dump()).encode(), f"client:{server}")
        await self.storage.put_oauth_client(server, sealed)

    async def grant(self, server: str, owner: str) -> Grant | None:
        """`owner`'s grant for `server`: opened from the store, or as opened before while the store holds the
        same sealed bytes (another replica's refresh changes them)."""
        key = (server, owner)
        sealed = await self.storage.get_grant(server, owner)
        if sealed is None:
            self._opened.pop(key, None)
            return None
        if len(sealed) > SEALED_MAX_BYTES:
            log.error("oauth grant too large to open (stored before tokens were capped?): it is forgotten, a new "
                      "login is needed", server=server, owner=owner, sealed_kib=len(sealed) // KIB)
            await self.forget(server, owner)
            return None
        digest = hashlib.sha256(sealed).digest()
        known = self._opened.get(key)
        if known is not None and known[0] == digest:
            self._opened.move_to_end(key)
            return known[1]
        context = _grant_context(server, owner)
        data = await anyio.to_thread.run_sync(self._open, sealed, context, server) \
            if len(sealed) >= OPEN_IN_THREAD_FROM else self._open(sealed, context, server)
        if data is None:
            return None
        try:
            grant = Grant(OAuthToken.model_validate(data["tokens"]), data.get("expires_at"))
        except (ValidationError, KeyError):
            return None
        self._keep(key, digest, grant)
        return grant

    def _keep(self, key: tuple[str, str], digest: bytes, grant: Grant) -> None:
        self._opened[key] = (digest, grant)
        self._opened.move_to_end(key)
        while len(self._opened) > MAX_OPENED:
            self._opened.popitem(last=False)

    async def save(self, server: str, owner: str, tokens: OAuthToken, *, kept_refresh: str | None = None) -> Grant:
        """Store new tokens (a refresh answer without a refresh token keeps the one it was made with)."""
        if tokens.refresh_token is None and kept_refresh is not None:
            tokens = tokens.model_copy(update={"refresh_token": kept_refresh})
        _check_sizes(tokens)
        expires = time.time() + tokens.expires_in if tokens.expires_in else None
        body = {"tokens": tokens.model_dump(mode="json", exclude_none=True), "expires_at": expires}
        sealed = self.vault.seal(json.dumps(body).encode(), _grant_context(server, owner))
        self._opened.pop((server, owner), None)
        await self.storage.put_grant(server, owner, sealed)
        grant = Grant(tokens, expires)
        self._keep((server, owner), hashlib.sha256(sealed).digest(), grant)
        return grant

    async def forget(self, server: str, owner: str) -> None:
        self._opened.pop((server, owner), None)
        await self.storage.delete_grants(server, owner)

    async def revoke(self, server: str, owner: str) -> bool:
        """Forget the grant, after asking the authorization server to revoke its refresh token (RFC 7009;
        best effort: a server without revocation lets it expire). False if there was none."""
        grant = await self.grant(server, owner)
        registration = await self.registration(server)
        endpoint = registration.metadata.revocation_endpoint if registration else None
        if grant is not None and registration is not None and endpoint is not None:
            token = grant.tokens.refresh_token or grant.tokens.access_token
            client = registration.client
            auth = httpx2.BasicAuth(client.client_id or "", client.client_secret) if client.client_secret else None
            form = {"token": token} if auth else {"token": token, "client_id": client.client_id or ""}
            try:
                await fetch(self.http, "POST", str(endpoint), data=form, auth=auth)
            except httpx2.HTTPError as exc:
                log.warning("oauth revocation not confirmed by the server", server=server, error=describe(exc))
        self._opened.pop((server, owner), None)
        return await self.storage.delete_grants(server, owner) > 0

    async def fresh(self, server: str, owner: str, *, rejected: str | None = None) -> Grant:
        """A grant whose access token is not about to expire, refreshed if needed; `rejected` is an access
        token the upstream just refused (401), which is refreshed whatever its expiry. Raises `LoginRequired`."""
        lock = self._locks.setdefault((server, owner), anyio.Lock())
        async with lock:
            grant = await self.grant(server, owner)
            if grant is None:
                raise LoginRequired(server, owner, "no login yet")
            if not grant.due() and grant.tokens.access_token != rejected:
                return grant
            async with self.storage.exclusive(f"oauth-refresh:{server}:{owner}"):  # one replica refreshes
                return await self._refresh(server, owner, rejected)

    async def _refresh(self, server: str, owner: str, rejected: str | None) -> Grant:
        """Under the store's lock: read again (another replica may have just refreshed), then refresh."""
        grant = await self.grant(server, owner)
        if grant is None:
            raise LoginRequired(server, owner, "no login yet")
        if not grant.due() and grant.tokens.access_token != rejected:
            return grant
        if grant.tokens.refresh_token is None:
            await self.forget(server, owner)
            raise LoginRequired(server, owner, "the access token expired and there is no refresh token")
        registration = await self.registration(server)
        if registration is None:
            raise LoginRequired(server, owner, "the gateway's client registration is gone")
        try:
            tokens = await self.token_request(registration, {"grant_type": "refresh_token",
                                                             "refresh_token": grant.tokens.refresh_token})
        except TokenRequestError as exc:
            if not exc.refused:  # the authorization server did not answer usably: the login is kept for the next try
                log.warning("oauth refresh failed: the login is kept for the next attempt", server=server,
                            owner=owner, error=str(exc))
                raise
            await self.forget(server, owner)
            log.warning("oauth refresh refused: a new login is needed", server=server, owner=owner,
                        error=str(exc))
            raise LoginRequired(server, owner, f"the refresh was refused ({exc})") from None
        log.info("oauth tokens refreshed", server=server, owner=owner)
        return await self.save(server, owner, tokens, kept_refresh=grant.tokens.refresh_token)

    async def token_request(self, registration: Registration, form: dict[str, str]) -> OAuthToken:
        """POST to the token endpoint with the client's authentication (RFC 6749 section 2.3) and `resource`."""
        client = registration.client
        data = {**form, "resource": registration.resource}
        auth: httpx2.BasicAuth | None = None
        method = client.token_endpoint_auth_method or ("client_secret_basic" if client.client_secret else "none")
        if method == "client_secret_basic" and client.client_secret:
            auth = httpx2.BasicAuth(client.client_id or "", client.client_secret)
        else:
            data["client_id"] = client.client_id or ""
            if method == "client_secret_post" and client.client_secret:
                data["client_secret"] = client.client_secret
        try:
            response = await fetch(self.http, "POST", str(registration.metadata.token_endpoint), data=data,
                                   auth=auth)
        except OutboundError as exc:  # too large, too slow: the login is kept for the next attempt
            raise TokenRequestError(str(exc), refused=False) from None
        except httpx2.HTTPError as exc:
            raise TokenRequestError(f"the token endpoint did not answer: {describe(exc)}", refused=False) \
                from None
        if response.status_code != 200:
            raise TokenRequestError(f"HTTP {response.status_code} {_error_code(response)}")
        try:
            tokens = OAuthToken.model_validate_json(response.content)
        except ValidationError:
            raise TokenRequestError("the token endpoint answered something that is not a token") from None
        _check_sizes(tokens)
        return tokens

    def _open(self, sealed: bytes, context: str, server: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.vault.open(sealed, context))
        except (VaultError, ValueError) as exc:
            log.error("oauth record cannot be opened (another secret key?): a new login is needed",
                      server=server, error=str(exc))
            return None
        return data if isinstance(data, dict) else None


def _error_code(response: httpx2.Response) -> str:
    """The `error` of an error answer, as a short word (a hostile server's is not echoed at length)."""
    try:
        code = response.json().get("error", "unknown")
    except (ValueError, AttributeError):
        return "unknown"
    text = str(code)
    return text if len(text) <= 64 and text.isprintable() else "(an unreadable error code)"


def _check_sizes(tokens: OAuthToken) -> None:
    """Refuses tokens (or a scope) over `TOKEN_MAX_CHARS`: they would be sealed, stored and sent on every call."""
    for name, value in (("an access token", tokens.access_token), ("a refresh token", tokens.refresh_token),
                        ("a scope", tokens.scope)):
        if value is not None and len(value) > TOKEN_MAX_CHARS:
            raise TokenRequestError(f"the token endpoint answered {name} of {len(value) // KIB} KiB, over the "
                                    f"{TOKEN_MAX_CHARS // KIB} KiB the gateway accepts")


def _grant_context(server: str, owner: str) -> str:
    """Bound into the seal: a sealed grant copied to another server or owner does not open."""
    return f"grant:{server}:{owner}"


def open_grants(config: GatewayConfig, storage: Storage, env: Mapping[str, str]) -> Grants | None:
    """The grants of a config with OAuth upstreams (None without any). Raises `VaultError` when no secret key
    can be had: a shared store needs `MCP_GATEWAY_SECRET_KEY` (the same on every replica) or a key file."""
    if not any(s.oauth is not None for s in config.servers.values()):
        return None
    key_file = Path(config.gateway.secret_key_file) if config.gateway.secret_key_file else None
    vault = Vault.load(env=env, key_file=key_file, state_dir=Path(config.gateway.state_dir),
                       shared_store=(config.storage.url or "").startswith("postgres"))
    return Grants(storage, vault, BoundedClient())
