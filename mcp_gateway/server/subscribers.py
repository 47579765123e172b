"""The gateway's clients' resource subscriptions, and the delivery of updates to them.

A subscription is held by a handshake-era client session (`resources/subscribe`), or by a
2026-07-28 client's `subscriptions/listen` stream for each resource URI it lists. It names the
upstream that owns the URI for its caller; the URIs wanted of each upstream are what `Followers`
keeps that upstream subscribed to.

An update from an upstream reaches the holders of that URI whose caller, derived again now
(`Callers`), may still use that upstream: a key revoked or moved out of the group since it
subscribed is skipped (its subscription stays, and counts, until it unsubscribes or its connection
ends). Sessions are notified on their connection; listen streams through the `subscriptions/listen`
bus (`ListChanges`), where the SDK's handler passes on only the URIs each stream asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mcp_types as types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated

from ..governance.identity import Identity
from ..upstream import Upstream
from .callers import Callers
from .changes import ListChanges
from .requests import may_access

MAX_SUBSCRIPTIONS = 10_000
"""Resource subscriptions on one gateway, all clients together."""
MAX_SUBSCRIPTIONS_PER_KEY = 1000
"""Resource subscriptions of one caller (an API key, or a signed-in user: by `Identity.principal`), all its
connections and listen streams together."""

Entry = tuple[str, str]
"""(upstream, resource URI)"""


@dataclass(frozen=True, eq=False)
class Holder:
    """Who holds a subscription: its caller, and the session to notify (None: a listen stream, told through the bus)."""

    identity: Identity
    session: ServerSession | None = None


class Subscribers:
    """Subscriptions by (upstream, URI) and by holder (a connection, or a listen stream), within the caps."""

    def __init__(self, callers: Callers, changes: ListChanges, on_change: Callable[[str], None]) -> None:
        self.callers = callers
        self.changes = changes
        self.on_change = on_change
        """Called with an upstream's name when the URIs wanted of it changed."""
        self._table: dict[Entry, dict[str, Holder]] = {}
        self._held: dict[str, set[Entry]] = {}
        self._wanted: dict[str, set[str]] = {}
        self._per_key: dict[str, int] = {}
        self._total = 0

    def room(self, caller: Identity, more: int) -> None:
        """Raise unless `caller` (counted by its principal) may hold `more` subscriptions besides those it holds."""
        if self._per_key.get(caller.principal, 0) + more > MAX_SUBSCRIPTIONS_PER_KEY:
            who = "user" if caller.subject is not None else "key"
            raise MCPError(types.INTERNAL_ERROR, f"{who} {caller.name} has {MAX_SUBSCRIPTIONS_PER_KEY} resource "
                                                 "subscriptions, the most one key may hold: unsubscribe first")
        if self._total + more > MAX_SUBSCRIPTIONS:
            raise MCPError(types.INTERNAL_ERROR, "too many resource subscriptions on this gateway")

    def add(self, server: str, uri: str, holder_id: str, holder: Holder) -> bool:
        """Record a subscription (within the caps); False when `holder_id` already held it (its holder is replaced)."""
        holders = self._table.get((server, uri), {})
        known = holder_id in holders
        if not known:
            self.room(holder.identity, 1)
        self._table.setdefault((server, uri), holders)[holder_id] = holder
        if known:
            return False
        self._held.setdefault(holder_id, set()).add((server, uri))
        self._count(holder.identity.principal, 1)
        wanted = self._wanted.setdefault(server, set())
        if uri not in wanted:
            wanted.add(uri)
            self.on_change(server)
        return True

    def drop(self, server: str, uri: str, holder_id: str) -> None:
        """Remove one subscription, if held; the upstream's URIs change when it was the last for that URI."""
        holders = self._table.get((server, uri), {})
        found = holders.pop(holder_id, None)
        if found is None:
            return
        self._count(found.identity.principal, -1)
        held = self._held.get(holder_id, set())
        held.discard((server, uri))
        if not held:
            self._held.pop(holder_id, None)
        if holders:
            return
        del self._table[(server, uri)]
        wanted = self._wanted.get(server, set())
        wanted.discard(uri)
        if not wanted:
            self._wanted.pop(server, None)
        self.on_change(server)

    def drop_uri(self, uri: str, holder_id: str) -> None:
        """The holder unsubscribed from `uri` (whichever upstream owned it when it subscribed)."""
        for server, held_uri in list(self._held.get(holder_id, ())):
            if held_uri == uri:
                self.drop(server, uri, holder_id)

    def drop_holder(self, holder_id: str) -> None:
        """The connection or listen stream ended: all its subscriptions go."""
        for server, uri in list(self._held.get(holder_id, ())):
            self.drop(server, uri, holder_id)

    def uris(self, server: str) -> frozenset[str]:
        """The URIs some client subscribed to at `server`."""
        return frozenset(self._wanted.get(server, ()))

    def _count(self, principal: str, delta: int) -> None:
        self._total += delta
        left = self._per_key.get(principal, 0) + delta
        if left > 0:
            self._per_key[principal] = left
        else:
            self._per_key.pop(principal, None)

    async def deliver(self, up: Upstream, uri: str) -> None:
        """`up` says `uri` changed: tell each holder whose caller may still use `up`."""
        holders = self._table.get((up.name, uri))
        if not holders:
            return
        allowed: dict[Identity, bool] = {}
        streams: set[Identity] = set()
        for holder_id, holder in list(holders.items()):
            identity = holder.identity
            if identity not in allowed:
                now = await self.callers.now(identity)
                allowed[identity] = now is not None and may_access(now, up)
            if not allowed[identity]:
                continue
            if holder.session is None:
                streams.add(identity)
                continue
            try:
                await holder.session.send_resource_updated(uri)
            except Exception:  # that client is gone: forget its subscription
                self.drop(up.name, uri, holder_id)
        if streams:
            await self.changes.publish_to(ResourceUpdated(uri=uri), lambda who: who in streams)
