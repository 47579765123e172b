"""Resources from every upstream the caller may use: listing, templates, reading and subscriptions.

A resource URI belongs to the first upstream that lists it or whose template matches it; with one
upstream serving resources, that one (it may serve URIs it does not list).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from ..gateway import Gateway
from ..governance.identity import Identity
from ..upstream import Upstream
from ..upstream_client import all_pages
from .changes import ListChanges
from .requests import ask, cached_or_fresh, first_of_each, gather, handshake_era, own_meta, serves, visible
from .sessions import session_key

MAX_SUBSCRIPTIONS = 10_000
"""Resource subscriptions on one gateway, all clients together."""
MAX_SUBSCRIPTIONS_PER_KEY = 1000
"""Resource subscriptions of one API key, all its connections together."""


class Resources:
    """The resources side of one gateway: which upstream listed which URI, and who subscribed to what."""

    def __init__(self, gw: Gateway, changes: ListChanges) -> None:
        self.gw = gw
        self.changes = changes
        self.listed_uris: dict[str, set[str]] = {}
        self.subscriptions: dict[tuple[str, str], dict[str, tuple[ServerSession, str]]] = {}
        self._per_key: Counter[str] = Counter()

    def _serving(self, identity: Identity) -> list[Upstream]:
        return [u for u in visible(self.gw, identity) if serves(u, "resources")]

    async def all_resources(self, identity: Identity) -> list[tuple[str, types.Resource]]:
        answers = await gather(self.gw, self._serving(identity), _list_resources)
        for server, resources in answers:
            self.listed_uris[server] = {r.uri for r in resources}
        return first_of_each(answers, lambda r: r.uri)

    async def all_templates(self, identity: Identity) -> list[tuple[str, types.ResourceTemplate]]:
        return first_of_each(await gather(self.gw, self._serving(identity), _list_templates), lambda t: t.uri_template)

    async def owner_of(self, identity: Identity, uri: str) -> Upstream:
        """The upstream a resource URI belongs to (see the module docstring)."""
        def lister() -> str | None:
            return next((u.name for u in visible(self.gw, identity) if uri in self.listed_uris.get(u.name, ())),
                        None)

        server = await cached_or_fresh(lister, lambda: self.all_resources(identity))
        if server is None:
            server = next((s for s, t in await self.all_templates(identity) if _matches(t.uri_template, uri)), None)
        candidates = self._serving(identity)
        if server is None and len(candidates) == 1:
            server = candidates[0].name
        up = next((u for u in candidates if u.name == server), None)
        if up is None:
            raise MCPError(types.INVALID_PARAMS, f"Resource not found: no upstream lists {uri}")
        return up

    def forget(self, server: str) -> None:
        """The upstream's resource list changed: its URIs are listed again on the next look-up."""
        self.listed_uris.pop(server, None)

    # ---- handlers -----------------------------------------------------------------------------

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        self.changes.watch(ctx, self.gw.identity)
        return types.ListResourcesResult(resources=[r for _, r in await self.all_resources(self.gw.identity)])

    async def list_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams
    ) -> types.ListResourceTemplatesResult:
        self.changes.watch(ctx, self.gw.identity)
        templates = [t for _, t in await self.all_templates(self.gw.identity)]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        identity = self.gw.identity
        up = await self.owner_of(identity, params.uri)
        async with self.gw.observer.observed(identity, "resource", up.name, params.uri, {}, "client") as seen:
            result = await ask(self.gw, up, lambda c: c.read_resource(params.uri))
            seen.result(result)
        return own_meta(result)

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        """Record the client's subscription; the owning upstream is subscribed once for all clients."""
        identity = self.gw.identity
        up = await self.owner_of(identity, params.uri)
        subscribers = self.subscriptions.get((up.name, params.uri), {})
        connection = session_key(ctx)
        if connection not in subscribers:
            if self._per_key[identity.name] >= MAX_SUBSCRIPTIONS_PER_KEY:
                raise MCPError(types.INTERNAL_ERROR, f"key {identity.name} has {MAX_SUBSCRIPTIONS_PER_KEY} resource "
                                                     "subscriptions, the most one key may hold: unsubscribe first")
            if self._per_key.total() >= MAX_SUBSCRIPTIONS:
                raise MCPError(types.INTERNAL_ERROR, "too many resource subscriptions on this gateway")
        if not subscribers and handshake_era(up) and serves(up, "subscribe"):
            request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=params.uri))
            await ask(self.gw, up, lambda c: c.session.send_request(request, types.EmptyResult))
        if connection not in subscribers:
            self._per_key[identity.name] += 1
        self.subscriptions.setdefault((up.name, params.uri), {})[connection] = (ctx.session, identity.name)
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        up = await self.owner_of(self.gw.identity, params.uri)
        if self._drop(up.name, params.uri, session_key(ctx)) and handshake_era(up) and serves(up, "subscribe"):
            request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=params.uri))
            await ask(self.gw, up, lambda c: c.session.send_request(request, types.EmptyResult))
        return types.EmptyResult()

    def forget_connection(self, connection: str) -> None:
        """The client connection ended: its subscriptions go (upstreams stay subscribed until a client unsubscribes
        or the upstream reconnects, which is harmless: their updates then reach no one)."""
        for server, uri in list(self.subscriptions):
            self._drop(server, uri, connection)

    def _drop(self, server: str, uri: str, connection: str) -> bool:
        """Remove one subscriber; True when the URI has no subscriber left."""
        subscribers = self.subscriptions.get((server, uri), {})
        found = subscribers.pop(connection, None)
        if found is not None:
            self._per_key[found[1]] -= 1
        if subscribers:
            return False
        self.subscriptions.pop((server, uri), None)
        return True

    async def updated(self, server: str, uri: str) -> None:
        """An upstream's resource changed: tell the clients subscribed to it."""
        for connection, (session, _) in list(self.subscriptions.get((server, uri), {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # that client is gone: forget its subscription
                self._drop(server, uri, connection)


def _matches(template: str, uri: str) -> bool:
    try:
        return UriTemplate.parse(template).match(uri) is not None
    except (InvalidUriTemplate, ValueError):
        return False


async def _list_resources(client: Client) -> list[types.Resource]:
    return await all_pages(lambda cursor: client.list_resources(cursor=cursor), lambda page: page.resources)


async def _list_templates(client: Client) -> list[types.ResourceTemplate]:
    return await all_pages(lambda cursor: client.list_resource_templates(cursor=cursor),
                           lambda page: page.resource_templates)
