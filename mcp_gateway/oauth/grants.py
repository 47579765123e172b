"""The OAuth tokens the gateway holds for upstreams: read, refreshed and written through the store, sealed.

One grant per (server, owner): owner "" is the shared login, `user:<sub>` a signed-in user, `key:<name>` an
API key's own login. Every replica reads the same rows, so a login made through one serves all. Tokens are
refreshed a minute before they expire (a quarter of a shorter life), under a lock of the store's so that two
replicas never spend one refresh token: the second reads the tokens the first stored. A refused refresh
forgets the grant: the next use asks for a new login (`LoginRequired`), never a dead upstream.
"""

from __future__ import annotations

import json
import time
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
from .vault import Vault, VaultError

log = structlog.get_logger("mcp_gateway.oauth")

SHARED = ""
"""The owner of a shared login: it serves every caller."""


def owner_of(identity: Identity) -> str:
    """Whose login a caller's calls use on a per-user upstream: a signed-in user's (by `sub`), else the key's."""
    return f"user:{identity.subject}" if identity.subject is not None else f"key:{identity.name}"


REFRESH_MARGIN_S = 60.0
"""Tokens are refreshed this long before they expire (at most)."""


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

    def __init__(self, storage: Storage, vault: Vault, http: httpx2.AsyncClient) -> None:
        self.storage = storage
        self.vault = vault
        self.http = http
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

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
        sealed = await self.storage.get_grant(server, owner)
        if sealed is None:
            return None
        data = self._open(sealed, _grant_context(server, owner), server)
        if data is None:
            return None
        try:
            return Grant(OAuthToken.model_validate(data["tokens"]), data.get("expires_at"))
        except (ValidationError, KeyError):
            return None

    async def save(self, server: str, owner: str, tokens: OAuthToken, *, kept_refresh: str | None = None) -> Grant:
        """Store new tokens (a refresh answer without a refresh token keeps the one it was made with)."""
        if tokens.refresh_token is None and kept_refresh is not None:
            tokens = tokens.model_copy(update={"refresh_token": kept_refresh})
        expires = time.time() + tokens.expires_in if tokens.expires_in else None
        body = {"tokens": tokens.model_dump(mode="json", exclude_none=True), "expires_at": expires}
        await self.storage.put_grant(server, owner, self.vault.seal(json.dumps(body).encode(),
                                                                    _grant_context(server, owner)))
        return Grant(tokens, expires)

    async def forget(self, server: str, owner: str) -> None:
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
                await self.http.post(str(endpoint), data=form, auth=auth or httpx2.USE_CLIENT_DEFAULT)
            except httpx2.HTTPError as exc:
                log.warning("oauth revocation not confirmed by the server", server=server, error=type(exc).__name__)
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
            if not exc.refused:
                raise  # the authorization server is unreachable: the login is kept for the next attempt
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
            response = await self.http.post(str(registration.metadata.token_endpoint), data=data,
                                            auth=auth or httpx2.USE_CLIENT_DEFAULT,
                                            headers={"accept": "application/json"})
        except httpx2.HTTPError as exc:
            raise TokenRequestError(f"the token endpoint did not answer: {type(exc).__name__}", refused=False) \
                from None
        if response.status_code != 200:
            try:
                code = str(response.json().get("error", "unknown"))
            except ValueError:
                code = "unknown"
            raise TokenRequestError(f"HTTP {response.status_code} {code}")
        try:
            return OAuthToken.model_validate_json(response.content)
        except ValidationError:
            raise TokenRequestError("the token endpoint answered something that is not a token") from None

    def _open(self, sealed: bytes, context: str, server: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.vault.open(sealed, context))
        except (VaultError, ValueError) as exc:
            log.error("oauth record cannot be opened (another secret key?): a new login is needed",
                      server=server, error=str(exc))
            return None
        return data if isinstance(data, dict) else None


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
    return Grants(storage, vault, httpx2.AsyncClient(timeout=httpx2.Timeout(15.0), follow_redirects=False))
