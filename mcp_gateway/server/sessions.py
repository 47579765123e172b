"""Client connections: one key per connection, for the state kept about it (listeners, subscriptions)."""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerRequestContext


def session_key(ctx: ServerRequestContext[Any]) -> str:
    """Its HTTP session id, the session object of a stateless request, or the single stdio client."""
    if ctx.request is None:
        return "stdio"
    session_id = ctx.request.headers.get("mcp-session-id")
    return f"http:{session_id}" if session_id else f"session:{id(ctx.session)}"
