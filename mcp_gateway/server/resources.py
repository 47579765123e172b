"""Resources from every upstream the caller may use: listing, templates, reading and subscriptions.

A resource URI belongs to the first upstream that lists it or whose template matches it; with one
upstream serving resources, that one (it may serve URIs it does not list).

Subscriptions come from handshake-era clients (`resources/subscribe`) and from 2026-07-28 clients
(the resource URIs of their `subscriptions/listen`, see `listening`); both are held in one table
(`subscribers.py`), whose URIs each upstream is kept subscribed to (`followers.py`) whatever its era.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import mcp_types as types
import structlog
from mcp import Client
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from ..gateway import Gateway
from ..governance.identity import Identity
from ..upstream import Upstream
from ..upstream_client import all_pages
from .callers import Callers
from .changes import ListChanges
from .followers import Followers
from .requests import ask, first_of_each, gather, handshake_era, own_meta, serves, visible
from .sessions import session_key
from .subscribers import Holder, Subscribers

log = structlog.get_logger("mcp_gateway.resources")

Listen = Callable[[ServerRequestContext[Any], types.SubscriptionsListenRequestParams],
                  Awaitable[types.SubscriptionsListenResult]]
"""A `subscriptions/listen` handler (the SDK's `ListenHandler`, or `Resources.listening` around it)."""


class Resources:
    """The resources side of one gateway: which upstream listed which URI, and who subscribed to what."""

    def __init__(self, gw: Gateway, changes: ListChanges) -> None:
        self.gw = gw
        self.changes = changes
        self.listed_uris: dict[str, set[str]] = {}
        self.subscribers = Subscribers(Callers(gw), changes, on_change=lambda server: self.followers.changed(server))
        self.followers = Followers(gw, self.subscribers.uris, self._listened)
        for up in gw.upstreams:  # made before the gateway starts, so every session of every upstream is followed
            up.companions.append(functools.partial(self.followers.follow, up.name))

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
        owners = await self.owners_of(identity, [uri])
        if uri not in owners:
            raise MCPError(types.INVALID_PARAMS, f"Resource not found: no upstream lists {uri}")
        return owners[uri]

    async def owners_of(self, identity: Identity, uris: Sequence[str]) -> dict[str, Upstream]:
        """The upstream each URI belongs to, listing again at most once; URIs that belong to none are left out."""
        candidates = self._serving(identity)

        def lister(uri: str) -> Upstream | None:
            return next((u for u in candidates if uri in self.listed_uris.get(u.name, ())), None)

        owners = {uri: up for uri in uris if (up := lister(uri)) is not None}
        missing = [uri for uri in uris if uri not in owners]
        if not missing:
            return owners
        await self.all_resources(identity)
        templates: list[tuple[str, types.ResourceTemplate]] | None = None
        for uri in missing:
            up = lister(uri)
            if up is None:
                templates = templates if templates is not None else await self.all_templates(identity)
                server = next((s for s, t in templates if _matches(t.uri_template, uri)), None)
                up = next((u for u in candidates if u.name == server), None)
            if up is None and len(candidates) == 1:
                up = candidates[0]
            if up is not None:
                owners[uri] = up
        return owners

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
        """Record the client's subscription, and return once the owning upstream has taken the URI."""
        identity = self.gw.identity
        up = await self.owner_of(identity, params.uri)
        connection = session_key(ctx)
        added = self.subscribers.add(up.name, params.uri, connection, Holder(identity, ctx.session))
        why = await self._taken(up, [params.uri])
        if why is not None:
            if added:
                self.subscribers.drop(up.name, params.uri, connection)
            raise MCPError(types.INTERNAL_ERROR, f"{up.name} did not take the subscription to {params.uri}: {why}")
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        """Forget the client's subscription; its upstream is unsubscribed when no client wants the URI any more."""
        self.subscribers.drop_uri(params.uri, session_key(ctx))
        return types.EmptyResult()

    def listening(self, inner: Listen) -> Listen:
        """`subscriptions/listen` for 2026-07-28 clients: `inner` (the SDK's `ListenHandler` on the changes bus)
        serves the stream; around it, the stream's resource URIs are subscribed as `resources/subscribe` would
        subscribe them, until the stream ends. URIs the caller cannot see are acknowledged and never fire, like
        URIs that do not exist. Over a key's subscription cap, the listen is refused before its acknowledgment."""

        async def listen(
            ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
        ) -> types.SubscriptionsListenResult:
            uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
            if not uris:
                return await inner(ctx, params)
            holder = f"listen:{secrets.token_hex(8)}"
            try:
                await self._hold(self.gw.identity, holder, uris)
                return await inner(ctx, params)
            finally:
                self.subscribers.drop_holder(holder)

        return listen

    async def _hold(self, identity: Identity, holder: str, uris: list[str]) -> None:
        """Subscribe a listen stream to `uris`; wait (each upstream within its timeout) until the upstreams took
        them. One that did not is logged: the stream goes on, and the follower asks that upstream again."""
        self.subscribers.room(identity, len(uris))
        by_server: dict[str, list[str]] = {}
        for uri, up in (await self.owners_of(identity, uris)).items():
            self.subscribers.add(up.name, uri, holder, Holder(identity))
            by_server.setdefault(up.name, []).append(uri)

        async def wait(server: str, taken: list[str]) -> None:
            why = await self._taken(self.gw.upstream(server), taken)
            if why is not None:
                log.warning("upstream did not take a listen's resource subscriptions", server=server, error=why)

        async with anyio.create_task_group() as tg:
            for server, taken in by_server.items():
                tg.start_soon(wait, server, taken)

    async def _taken(self, up: Upstream, uris: list[str]) -> str | None:
        """None once `up` acknowledged `uris` (at once for an upstream that sends no updates), else why not."""
        if not serves(up, "subscribe"):
            return None
        return await self.followers.covered(up.name, uris, self.gw.config.timeout_of(up.config))

    def forget_connection(self, connection: str) -> None:
        """The client connection ended: its subscriptions go (and upstreams are unsubscribed from URIs no one
        wants any more)."""
        self.subscribers.drop_holder(connection)

    async def updated(self, server: str, uri: str) -> None:
        """An upstream's `notifications/resources/updated`: tell the clients subscribed to it that may still use
        that upstream. From a 2026-07-28 upstream it is ignored here: it came on the listen stream `Followers`
        opened (`_listened`), and the SDK hands every listen frame to the message handler as well."""
        up = self.gw.upstream(server)
        if handshake_era(up):
            await self.subscribers.deliver(up, uri)

    async def _listened(self, server: str, uri: str) -> None:
        await self.subscribers.deliver(self.gw.upstream(server), uri)


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
