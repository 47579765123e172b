"""The MCP SDK's own OAuth client, signing a test user in to an MCP server whose protected-resource metadata
names the test provider (`idp.py`): the browser step is `sign_in`, over HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp.client.auth import OAuthClientProvider, OAuthFlowError
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.identity.idp import REDIRECT_URI, IdentityProvider, OAuthClient, sign_in


class MemoryTokenStorage:
    """The SDK's `TokenStorage`, in memory: a test reads `tokens` (and `client_info`) to see what was issued."""

    def __init__(self, client_info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class UserOAuth(OAuthClientProvider):
    """The MCP SDK's OAuth client (an httpx2 auth) whose browser step signs `user` in by HTTP requests."""

    def __init__(self, server_url: str, user: str, client: OAuthClient | None = None,
                 scope: str | None = None) -> None:
        self.user = user
        self.storage = MemoryTokenStorage(client.information() if client else None)
        self.authorizations: list[str] = []  # the authorization URL each browser step was sent to
        self.sign_ins: list[str] = []  # and the redirect URL it ended at
        metadata = OAuthClientMetadata.model_validate({
            "redirect_uris": [client.redirect_uris[0] if client else REDIRECT_URI], "client_name": "mcp-gateway tests",
            "scope": scope, "token_endpoint_auth_method": client.auth_method if client else "none",
        })
        super().__init__(server_url, metadata, self.storage, redirect_handler=self._browse,
                         callback_handler=self._callback)

    async def _browse(self, authorize_url: str) -> None:
        self.authorizations.append(authorize_url)
        async with httpx2.AsyncClient() as browser:
            self.sign_ins.append(await sign_in(browser, authorize_url, self.user))

    async def _callback(self) -> AuthorizationCodeResult:
        answer = {key: values[0] for key, values in parse_qs(urlsplit(self.sign_ins[-1]).query).items()}
        if "code" not in answer:
            raise OAuthFlowError(f"the provider redirected to {self.sign_ins[-1]}")
        return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))


def oauth_client(server_url: str, user: str, idp: IdentityProvider, *, client_id: str | None = None,
                 scope: str | None = None) -> UserOAuth:
    """The SDK's OAuth client for an MCP server at `server_url` whose protected-resource metadata names `idp`:
    pass it as `httpx2.AsyncClient(auth=...)` under `streamable_http_client`. It registers itself (RFC 7591; a
    public client) unless `client_id` names one of `idp`'s clients. Its tokens are in `.storage.tokens`."""
    return UserOAuth(server_url, user, idp.client(client_id) if client_id else None, scope)
