"""What every server built on one gateway shares: the relay, list changes, resources and prompts.

`build_server(gw)` may be called several times on one gateway (an HTTP app and an in-process
server, say); the upstreams' traffic must reach the clients of all of them, so this state is
made once per gateway (`shared_state`) and each upstream's hooks are set once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
)

from ..gateway import Gateway
from ..governance.identity import Identity
from ..tools import visible_tools
from ..upstream_client import ClientOptions
from .changes import ListChanges
from .prompts import Prompts
from .relay import Relay
from .requests import may_access
from .resources import Resources


@dataclass(frozen=True)
class Shared:
    relay: Relay
    changes: ListChanges
    resources: Resources
    prompts: Prompts

    def forget(self, connection: str) -> None:
        """A client connection ended: drop what was kept for it."""
        self.changes.forget(connection)
        self.relay.forget(connection)
        self.resources.forget_connection(connection)


_STATE: weakref.WeakKeyDictionary[Gateway, Shared] = weakref.WeakKeyDictionary()


def shared_state(gw: Gateway) -> Shared:
    """The gateway's shared serving state, made on first use (before the gateway starts: upstreams take the
    hooks when they connect)."""
    state = _STATE.get(gw)
    if state is None:
        changes = ListChanges(lambda: visible_tools(gw), lambda: gw.identity, lambda: gw.full_catalog)
        resources = Resources(gw, changes)
        state = _STATE[gw] = Shared(Relay(gw), changes, resources, Prompts(gw, changes, resources))
        gw.catalog_listeners.append(changes.notify)
        for up in gw.upstreams:
            up.hooks = UpstreamHooks(gw, state, up.name)
    return state


class UpstreamHooks:
    """One upstream's `Hooks`: its callbacks and notifications go to the relay, resources, prompts and changes."""

    def __init__(self, gw: Gateway, state: Shared, server: str) -> None:
        self.gw = gw
        self.state = state
        self.server = server

    def client_options(self) -> ClientOptions:
        """Callbacks that route to the calling client; `log_level` opts in to logs on 2026-07-28 upstreams.
        (`list_roots_callback` is kept only for upstreams with `roots = true`: `Upstream.client_options`.)"""
        return ClientOptions(sampling_callback=self.sampling, elicitation_callback=self.elicitation,
                             list_roots_callback=self.roots, logging_callback=self.logging,
                             message_handler=self.message, log_level="debug")

    def progress_callback(self) -> ProgressFnT | None:
        return self.state.relay.progress_callback(self.server)

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        return await self.state.relay.sampling(self.server, params)

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        return await self.state.relay.elicitation(self.server, params)

    async def roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        return await self.state.relay.roots(self.server, context.session)

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        await self.state.relay.log_message(self.server, params)

    async def message(self, message: Any) -> None:
        """Notifications outside any listen stream: a handshake-era upstream's.

        The SDK hands every frame of a 2026-07-28 upstream's `subscriptions/listen` stream to the message
        handler as well as to the stream, whose events come to `event`: such a frame (stamped with its
        stream's subscription id) is left to the stream, so that each change is relayed once.
        """
        if _on_listen_stream(message):
            return
        if isinstance(message, types.ResourceUpdatedNotification):
            await self.state.resources.updated(self.server, message.params.uri)
        elif isinstance(message, types.ResourceListChangedNotification):
            await self.lists_changed(ResourcesListChanged())
        elif isinstance(message, types.PromptListChangedNotification):
            await self.lists_changed(PromptsListChanged())

    async def event(self, event: ServerEvent) -> None:
        """A change a 2026-07-28 upstream announced on its `subscriptions/listen` stream."""
        if isinstance(event, PromptsListChanged | ResourcesListChanged):
            await self.lists_changed(event)
        elif isinstance(event, ResourceUpdated):
            await self.state.resources.updated(self.server, event.uri)

    async def lists_changed(self, event: PromptsListChanged | ResourcesListChanged) -> None:
        """Forget what was cached of the upstream's list; tell the clients that may use the upstream."""
        if isinstance(event, PromptsListChanged):
            self.state.prompts.forget(self.server)
        else:
            self.state.resources.forget(self.server)
        await self.state.changes.upstream_list_changed(event, self._may_see())

    def _may_see(self) -> Callable[[Identity], bool]:
        up = self.gw.upstream(self.server)
        return lambda identity: may_access(identity, up)


def _on_listen_stream(message: Any) -> bool:
    """Whether a notification is a frame of a `subscriptions/listen` stream (its `_meta` names the stream)."""
    meta = getattr(getattr(message, "params", None), "meta", None)
    return isinstance(meta, Mapping) and meta.get(SUBSCRIPTION_ID_META_KEY) is not None
