"""HTTP authentication: `Authorization: Bearer <key>` or `X-API-Key`, checked on every request."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .keys import KeyRing
from .policy import NOBODY, OPEN, Identity

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from .gateway import Gateway

IDENTITY_SCOPE_KEY = "mcp_gateway.identity"


def identity_of_request(request: Any) -> Identity | None:
    """The identity the middleware attached to the HTTP request a message arrived with."""
    scope = getattr(request, "scope", None)
    return scope.get(IDENTITY_SCOPE_KEY) if isinstance(scope, dict) else None


def caller(gw: Gateway, ctx: ServerRequestContext[Any]) -> Identity:
    """Who sent an MCP request: over HTTP the identity attached by `KeyAuth`, over stdio the local caller."""
    if ctx.request is not None:
        return identity_of_request(ctx.request) or NOBODY
    return gw.stdio_identity


class KeyAuth:
    """ASGI middleware for `/mcp` routes: 401 with a JSON-RPC error for a missing or unknown key."""

    def __init__(self, app: ASGIApp, keys: KeyRing, groups: dict[str, list[str]]) -> None:
        self.app = app
        self.keys = keys
        self.groups = groups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        identity = self._identify(scope)
        if identity is None:
            await _reject(send, 401, "missing, unknown or revoked API key: send `Authorization: Bearer <key>`")
            return
        group = scope.get("path_params", {}).get("group")
        if group is not None:
            if group not in self.groups:
                await _reject(send, 404, f"no tool group named {group!r}")
                return
            identity = identity.at_endpoint(group, self.groups[group])
        scope[IDENTITY_SCOPE_KEY] = identity
        await self.app(scope, receive, send)

    def _identify(self, scope: Scope) -> Identity | None:
        if self.keys.is_open():
            return OPEN
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        secret = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "").strip()
        return self.keys.authenticate(secret) if secret else None


async def _reject(send: Send, status: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mcp-gateway"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
