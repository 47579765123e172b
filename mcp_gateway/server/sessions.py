"""Client connections: one key per connection, the HTTP sessions of each API key, and state kept per connection.

One API key cannot take the gateway's room from the others: it opens at most `max_sessions_per_key`
HTTP sessions, and every table kept per connection (list-change watchers, log listeners) holds at
most `PER_KEY` of its connections, evicting its own oldest first. When an HTTP session ends (the
client's DELETE, or idle expiry), what was kept for it is forgotten at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

V = TypeVar("V")

PER_KEY = 64
"""Connections of one API key remembered by each per-connection table."""
TOTAL = 10_000
"""Connections remembered by each per-connection table, all keys together."""


def session_key(ctx: ServerRequestContext[Any]) -> str:
    """Its HTTP session id, the session object of a stateless request, or the single stdio client."""
    if ctx.request is None:
        return "stdio"
    session_id = ctx.request.headers.get("mcp-session-id")
    return f"http:{session_id}" if session_id else f"session:{id(ctx.session)}"


class PerKey(Generic[V]):
    """Values by connection, at most `per_key` connections of one key (its oldest go first) and `total` in all."""

    def __init__(self, per_key: int = PER_KEY, total: int = TOTAL) -> None:
        self.per_key = per_key
        self.total = total
        self._items: OrderedDict[str, tuple[str, V]] = OrderedDict()

    def put(self, connection: str, key: str, value: V) -> None:
        self._items.pop(connection, None)
        mine = [c for c, (k, _) in self._items.items() if k == key]
        for old in mine[: max(0, len(mine) - self.per_key + 1)]:
            del self._items[old]
        while len(self._items) >= self.total:
            self._items.popitem(last=False)
        self._items[connection] = (key, value)

    def get(self, connection: str) -> V | None:
        found = self._items.get(connection)
        return None if found is None else found[1]

    def pop(self, connection: str) -> None:
        self._items.pop(connection, None)

    def items(self) -> list[tuple[str, V]]:
        return [(c, v) for c, (_, v) in self._items.items()]

    def __len__(self) -> int:
        return len(self._items)


class SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, with a cap on sessions per key and a hook for sessions that end."""

    def __init__(self, *args: Any, max_sessions_per_key: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_sessions_per_key = max_sessions_per_key
        self.on_closed: list[Callable[[str], None]] = []

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        if requestor is not None:
            owners = self._session_owners.values()
            if sum(o["client_id"] == requestor["client_id"] for o in owners) >= self.max_sessions_per_key:
                return None  # answered 503 "Too many open sessions", as at the global limit
        return super()._admit_session(requestor)

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        await super()._discard_session(session_id, transport)
        for forget in list(self.on_closed):
            forget(f"http:{session_id}")
