"""List changes (tools, prompts, resources) for the clients whose view changed, and no one else.

An upstream's tools appear, change or go away (it connected, reconnected, died, or sent its own
`list_changed`). Each client sees the tools its key allows, so the gateway compares, per client,
the tool list it would get now with the one it was last given, and notifies only on a difference.
An upstream's prompts or resources changed: the clients that may use that upstream are told.

Two kinds of clients are tracked: handshake-era sessions (2025-11-25 and earlier) that listed
tools, prompts or resources, notified on their session; and 2026-07-28 `subscriptions/listen`
streams, for which this class is the SDK's `SubscriptionBus`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import structlog
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ServerEvent, ToolsListChanged
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from ..governance.identity import Identity, acting_as
from .sessions import PerKey, session_key

log = structlog.get_logger("mcp_gateway.changes")

View = Callable[[], list[types.Tool]]


@dataclass
class _Watcher:
    identity: Identity
    seen: str


class ListChanges:
    """Remembers what each client was shown; `notify` (after a catalog change) tells those whose view changed."""

    def __init__(self, view: View, identity: Callable[[], Identity], version: Callable[[], object]) -> None:
        self._view = view
        self._identity = identity
        self._version = version
        self._digests: dict[Identity, tuple[object, str]] = {}
        self._sessions: PerKey[tuple[ServerSession, _Watcher]] = PerKey()
        self._list_watchers: PerKey[tuple[ServerSession, Identity]] = PerKey()
        self._streams: dict[object, tuple[Callable[[ServerEvent], None], _Watcher]] = {}

    def fingerprint(self, identity: Identity) -> str:
        """A digest of the tool list `identity` would get now, computed once per catalog `version`."""
        version = self._version()
        known = self._digests.get(identity)
        if known is None or known[0] is not version:
            with acting_as(identity):
                known = self._digests[identity] = (version, _digest(self._view()))
        return known[1]

    def listed(self, key: str, session: ServerSession, identity: Identity) -> None:
        """A handshake-era client (`key` names its connection) was just given its tool list.

        The SDK makes a `ServerSession` per request; a kept one still reaches its connection.
        Each caller's most recent connections are remembered (`sessions.PerKey`, by `Identity.principal`: a
        signed-in user named like a key never evicts that key's).
        """
        self._sessions.put(key, identity.principal, (session, _Watcher(identity, self.fingerprint(identity))))

    async def notify(self) -> None:
        """The catalog changed: tell each client whose tool list is now different."""
        for deliver, watcher in list(self._streams.values()):
            if self._moved(watcher):
                deliver(ToolsListChanged())
        for key, (session, watcher) in list(self._sessions.items()):
            if self._moved(watcher):
                try:
                    await session.send_tool_list_changed()
                except Exception as exc:  # that client is gone
                    log.debug("list_changed not delivered", error=str(exc))
                    self._sessions.pop(key)

    def _moved(self, watcher: _Watcher) -> bool:
        now = self.fingerprint(watcher.identity)
        if now == watcher.seen:
            return False
        watcher.seen = now
        return True

    def watch(self, ctx: ServerRequestContext[Any], identity: Identity) -> None:
        """A handshake-era client listed resources or prompts: tell it when an upstream's lists change."""
        if ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return  # 2026-07-28 clients learn of changes on their `subscriptions/listen` stream
        key = session_key(ctx)
        self._list_watchers.put(key, identity.principal, (ctx.session, identity))

    async def upstream_list_changed(self, event: PromptsListChanged | ResourcesListChanged,
                                    may_see: Callable[[Identity], bool]) -> None:
        """An upstream's prompts or resources changed: tell the clients that `may_see` that upstream."""
        for key, (session, identity) in list(self._list_watchers.items()):
            if not may_see(identity):
                continue
            try:
                if isinstance(event, PromptsListChanged):
                    await session.send_prompt_list_changed()
                else:
                    await session.send_resource_list_changed()
            except Exception:  # that client is gone
                self._list_watchers.pop(key)
        await self.publish_to(event, may_see)

    def forget(self, connection: str) -> None:
        """The client connection ended."""
        self._sessions.pop(connection)
        self._list_watchers.pop(connection)

    # ---- mcp.server.subscriptions.SubscriptionBus, for 2026-07-28 listen streams -------------

    async def publish(self, event: ServerEvent) -> None:
        await self.publish_to(event, lambda identity: True)

    async def publish_to(self, event: ServerEvent, may_see: Callable[[Identity], bool]) -> None:
        """Deliver `event` to the listen streams whose caller `may_see` it."""
        for deliver, watcher in list(self._streams.values()):
            if may_see(watcher.identity):
                deliver(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Called by the SDK's listen handler in the listening request's context, so under its caller."""
        identity = self._identity()
        token = object()
        self._streams[token] = (listener, _Watcher(identity, self.fingerprint(identity)))

        def unsubscribe() -> None:
            self._streams.pop(token, None)

        return unsubscribe


def _digest(tools: list[types.Tool]) -> str:
    dumped = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()
