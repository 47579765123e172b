"""Everything besides tools that a gateway must forward between its clients and its upstreams.

Downstream requests (client to gateway), answered from the upstreams:
resources/list, resources/templates/list, resources/read, resources/subscribe and unsubscribe,
prompts/list, prompts/get, completion/complete and logging/setLevel.

Upstream traffic (upstream to gateway), relayed to the client whose request caused it: progress of a
tool call, log messages, and the sampling and elicitation requests a tool sends while it runs. The
request being served is recorded in a context variable by a server middleware; the SDK runs an
upstream's callbacks in the context of the call that caused them (2026-07-28 upstreams, and
handshake-era upstreams over streamable HTTP). Over stdio a handshake-era upstream's requests arrive
outside any call: they go to the one call in flight that may use that upstream, or are refused.

Who sees what: a caller sees the resources and prompts of an upstream when it may call at least one
of that upstream's tools (an upstream without tools: when its allow patterns name the server).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import anyio
import mcp_types as types
import structlog
from mcp.client.session import ClientRequestContext, ElicitationFnT, LoggingFnT, MessageHandlerFnT, SamplingFnT
from mcp.server.connection import allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.session import ServerSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from .auth import caller
from .codemode import META_NAMES
from .errors import GatewayError, describe_exception
from .policy import Identity, acting_as

if TYPE_CHECKING:
    from mcp import Client

    from .changes import ViewChanges
    from .gateway import Gateway
    from .upstream import Upstream

log = structlog.get_logger("mcp_gateway.forwarding")

LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_CALL_METHODS = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_PAGES = 100
_MAX_LISTENERS = 256
_MAX_SUBSCRIPTIONS = 10_000
_T = TypeVar("_T")


class ClientOptions(TypedDict, total=False):
    """Keyword arguments for an upstream's SDK `Client`: `Client(transport, ..., **hooks.client_options())`."""

    sampling_callback: SamplingFnT
    elicitation_callback: ElicitationFnT
    logging_callback: LoggingFnT
    message_handler: MessageHandlerFnT
    log_level: types.LoggingLevel


@dataclass(eq=False)
class DownstreamCall:
    """A client request in flight whose upstream traffic is relayed back to that client."""

    forwarder: Forwarder
    ctx: ServerRequestContext[Any]
    identity: Identity
    relay_progress: bool

    @property
    def related(self) -> ServerMessageMetadata:
        return ServerMessageMetadata(related_request_id=self.ctx.request_id)


_current_call: ContextVar[DownstreamCall | None] = ContextVar("mcp_gateway_downstream_call", default=None)


@dataclass(eq=False)
class _Listener:
    """A client session that asked for log messages (`logging/setLevel`) or resource updates."""

    session: ServerSession
    identity: Identity
    level: types.LoggingLevel = "debug"


@dataclass
class Forwarder:
    """The forwarding state of one gateway: who listens, and which upstream owns which name."""

    gw: Gateway
    listed_uris: dict[str, set[str]] = field(default_factory=dict)
    listed_prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    listeners: OrderedDict[str, _Listener] = field(default_factory=OrderedDict)
    subscriptions: dict[tuple[str, str], dict[str, ServerSession]] = field(default_factory=dict)
    upstream_levels: dict[str, types.LoggingLevel] = field(default_factory=dict)
    active: list[DownstreamCall] = field(default_factory=list)
    list_watchers: OrderedDict[str, tuple[ServerSession, Identity]] = field(default_factory=OrderedDict)
    changes: ViewChanges | None = None

    # ---- who may see what -------------------------------------------------------------------

    def may_access(self, identity: Identity, server: str) -> bool:
        tools = self.gw.upstream(server).tools
        if tools:
            return any(identity.allows(server, t.name) for t in tools)
        return identity.may_see_server(server)

    def visible(self, identity: Identity) -> list[Upstream]:
        """Ready upstreams the caller may use, in configuration order."""
        return [u for u in self.gw.upstreams
                if u.client is not None and self.may_access(identity, u.name)]

    def prompt_name(self, server: str, name: str) -> str:
        """Names pass through for the direct-mode server when tool names do; otherwise `<server>_<name>`."""
        cfg = self.gw.config
        if not cfg.gateway.prefix_direct_tools and cfg.mode_of(self.gw.upstream(server).config) == "direct":
            return name
        return _UNSAFE.sub("_", f"{server}_{name}")

    # ---- calling upstreams ------------------------------------------------------------------

    async def ask(self, up: Upstream, request: Callable[[Client], Awaitable[_T]]) -> _T:
        """One request to an upstream under its timeout; failures become JSON-RPC errors for the client."""
        client = up.client
        if client is None:
            raise MCPError(types.INTERNAL_ERROR, f"server {up.name} is unavailable ({up.status})")
        timeout = up.config.timeout_s or self.gw.config.gateway.call_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await request(client)
        except MCPError:
            raise
        except TimeoutError:
            raise MCPError(types.INTERNAL_ERROR, f"{up.name}: no answer within {timeout:g} s") from None
        except (GatewayError, ValidationError, OSError) as exc:
            raise MCPError(types.INTERNAL_ERROR, f"{up.name}: {describe_exception(exc)}") from exc

    async def gather(self, ups: list[Upstream], request: Callable[[Client], Awaitable[_T]]) -> list[tuple[str, _T]]:
        """The same request to several upstreams at once; one that fails is logged and left out."""
        answers: dict[str, _T] = {}

        async def one(up: Upstream) -> None:
            try:
                answers[up.name] = await self.ask(up, request)
            except MCPError as exc:
                if exc.code != types.METHOD_NOT_FOUND:
                    log.warning("upstream listing failed", server=up.name, error=exc.message)
            except Exception as exc:  # one broken upstream must not empty everyone's listing
                log.warning("upstream listing failed", server=up.name, error=describe_exception(exc))

        async with anyio.create_task_group() as tg:
            for up in ups:
                tg.start_soon(one, up)
        return [(u.name, answers[u.name]) for u in ups if u.name in answers]

    # ---- resources --------------------------------------------------------------------------

    async def all_resources(self, identity: Identity) -> list[tuple[str, types.Resource]]:
        ups = [u for u in self.visible(identity) if _serves(u, "resources")]
        answers = await self.gather(ups, _list_resources)
        for server, resources in answers:
            self.listed_uris[server] = {r.uri for r in resources}
        return _first_of_each(answers, lambda r: r.uri)

    async def all_templates(self, identity: Identity) -> list[tuple[str, types.ResourceTemplate]]:
        ups = [u for u in self.visible(identity) if _serves(u, "resources")]
        return _first_of_each(await self.gather(ups, _list_templates), lambda t: t.uri_template)

    async def owner_of(self, identity: Identity, uri: str) -> Upstream:
        """The upstream a resource URI belongs to: the first that lists it, or whose template matches it."""
        def lister() -> str | None:
            return next((u.name for u in self.visible(identity) if uri in self.listed_uris.get(u.name, ())), None)

        server = lister()
        if server is None:
            await self.all_resources(identity)
            server = lister()
        if server is None:
            server = next((s for s, t in await self.all_templates(identity) if _matches(t.uri_template, uri)), None)
        candidates = [u for u in self.visible(identity) if _serves(u, "resources")]
        if server is None and len(candidates) == 1:
            server = candidates[0].name  # one upstream with resources: it may serve URIs it does not list
        up = next((u for u in candidates if u.name == server), None)
        if up is None:
            raise MCPError(types.INVALID_PARAMS, f"Resource not found: no upstream lists {uri}")
        return up

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        self.watch(ctx)
        return types.ListResourcesResult(resources=[r for _, r in await self.all_resources(caller(self.gw, ctx))])

    async def list_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams
    ) -> types.ListResourceTemplatesResult:
        self.watch(ctx)
        templates = [t for _, t in await self.all_templates(caller(self.gw, ctx))]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        identity = caller(self.gw, ctx)
        up = await self.owner_of(identity, params.uri)
        async with self.audited(identity, "resource", up.name, params.uri, {}) as outcome:
            result = await self.ask(up, lambda c: c.read_resource(params.uri))
            outcome.append(sum(len(getattr(c, "text", "") or getattr(c, "blob", "")) for c in result.contents))
        return _own_meta(result)

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        """Record the client's subscription; the owning upstream is subscribed once for all clients."""
        identity = caller(self.gw, ctx)
        up = await self.owner_of(identity, params.uri)
        subscribers = self.subscriptions.setdefault((up.name, params.uri), {})
        if sum(len(s) for s in self.subscriptions.values()) >= _MAX_SUBSCRIPTIONS:
            raise MCPError(types.INTERNAL_ERROR, "too many resource subscriptions on this gateway")
        if not subscribers and _handshake_era(up) and _serves(up, "subscribe"):
            request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=params.uri))
            await self.ask(up, lambda c: c.session.send_request(request, types.EmptyResult))
        subscribers[session_key(ctx)] = ctx.session
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        identity = caller(self.gw, ctx)
        up = await self.owner_of(identity, params.uri)
        subscribers = self.subscriptions.get((up.name, params.uri), {})
        subscribers.pop(session_key(ctx), None)
        if not subscribers:
            self.subscriptions.pop((up.name, params.uri), None)
            if _handshake_era(up) and _serves(up, "subscribe"):
                request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=params.uri))
                await self.ask(up, lambda c: c.session.send_request(request, types.EmptyResult))
        return types.EmptyResult()

    async def resource_updated(self, server: str, uri: str) -> None:
        for key, session in list(self.subscriptions.get((server, uri), {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # that client is gone: forget its subscription
                self.subscriptions.get((server, uri), {}).pop(key, None)

    # ---- prompts and completions ------------------------------------------------------------

    async def all_prompts(self, identity: Identity) -> dict[str, tuple[str, types.Prompt]]:
        """Client-facing name to (server, upstream prompt); on a name clash the first server wins."""
        ups = [u for u in self.visible(identity) if _serves(u, "prompts")]
        listed: dict[str, tuple[str, types.Prompt]] = {}
        for server, prompts in await self.gather(ups, _list_prompts):
            self.listed_prompts[server] = {self.prompt_name(server, p.name): p.name for p in prompts}
            for p in prompts:
                listed.setdefault(self.prompt_name(server, p.name), (server, p))
        return listed

    async def prompt_route(self, identity: Identity, name: str) -> tuple[Upstream, str]:
        """The upstream (the first in configuration order that lists the name) and its own prompt name."""
        def lookup() -> tuple[Upstream, str] | None:
            for up in self.visible(identity):
                upstream_name = self.listed_prompts.get(up.name, {}).get(name)
                if upstream_name is not None:
                    return up, upstream_name
            return None

        route = lookup()
        if route is None:
            await self.all_prompts(identity)
            route = lookup()
        if route is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}")
        return route

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams
    ) -> types.ListPromptsResult:
        self.watch(ctx)
        listed = await self.all_prompts(caller(self.gw, ctx))
        return types.ListPromptsResult(
            prompts=[p.model_copy(update={"name": name}) for name, (_, p) in listed.items()])

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        identity = caller(self.gw, ctx)
        up, name = await self.prompt_route(identity, params.name)
        args = params.arguments or {}
        async with self.audited(identity, "prompt", up.name, name, args) as outcome:
            result = await self.ask(up, lambda c: c.get_prompt(name, args))
            outcome.append(sum(len(getattr(m.content, "text", "")) for m in result.messages))
        return _own_meta(result)

    async def complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        identity = caller(self.gw, ctx)
        ref = params.ref
        up: Upstream | None = None
        if isinstance(ref, types.PromptReference):
            up, name = await self.prompt_route(identity, ref.name)
            ref = ref.model_copy(update={"name": name})
        else:
            server = next((s for s, t in await self.all_templates(identity) if t.uri_template == ref.uri), None)
            up = next((u for u in self.visible(identity) if u.name == server), None)
        if up is None or not _serves(up, "completions"):
            return types.CompleteResult(completion=types.Completion(values=[], total=0, has_more=False))
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        upstream_ref = ref
        result = await self.ask(up, lambda c: c.complete(upstream_ref, argument, context))
        return _own_meta(result)

    # ---- list changes -----------------------------------------------------------------------

    def watch(self, ctx: ServerRequestContext[Any]) -> None:
        """A handshake-era client listed resources or prompts: tell it when an upstream's lists change."""
        if ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return  # 2026-07-28 clients learn of changes on their `subscriptions/listen` stream
        key = session_key(ctx)
        self.list_watchers.pop(key, None)
        self.list_watchers[key] = (ctx.session, caller(self.gw, ctx))
        while len(self.list_watchers) > _MAX_LISTENERS:
            self.list_watchers.popitem(last=False)

    async def list_changed(self, server: str, event: PromptsListChanged | ResourcesListChanged) -> None:
        """An upstream's prompts or resources changed: forget what was cached, tell the clients that see it."""
        if isinstance(event, PromptsListChanged):
            self.listed_prompts.pop(server, None)
        else:
            self.listed_uris.pop(server, None)
        for key, (session, identity) in list(self.list_watchers.items()):
            if not self.may_access(identity, server):
                continue
            try:
                if isinstance(event, PromptsListChanged):
                    await session.send_prompt_list_changed()
                else:
                    await session.send_resource_list_changed()
            except Exception:  # that client is gone
                self.list_watchers.pop(key, None)
        if self.changes is not None:
            await self.changes.publish_to(event, lambda identity: self.may_access(identity, server))

    # ---- logging ----------------------------------------------------------------------------

    async def set_level(self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Remember the client's level; lower the upstreams' level (shared by all clients) when needed."""
        identity = caller(self.gw, ctx)
        key = session_key(ctx)
        self.listeners.pop(key, None)
        self.listeners[key] = _Listener(ctx.session, identity, params.level)
        while len(self.listeners) > _MAX_LISTENERS:
            self.listeners.popitem(last=False)
        request = types.SetLevelRequest(params=types.SetLevelRequestParams(level=params.level))
        for up in self.visible(identity):
            current = self.upstream_levels.get(up.name)
            if not _handshake_era(up) or not _serves(up, "logging"):
                continue
            if current is not None and LEVELS.index(current) <= LEVELS.index(params.level):
                continue
            try:
                await self.ask(up, lambda c: c.session.send_request(request, types.EmptyResult))
                self.upstream_levels[up.name] = params.level
            except MCPError as exc:
                log.warning("upstream refused logging/setLevel", server=up.name, error=exc.message)
        return types.EmptyResult()

    async def log_message(self, server: str, params: types.LoggingMessageNotificationParams) -> None:
        """To the client whose call caused it; otherwise to every client that asked for logs and may see it."""
        logger = f"{server}.{params.logger}" if params.logger else server
        relayed = types.LoggingMessageNotificationParams(level=params.level, data=params.data, logger=logger)
        call = self.route(server)
        if call is not None:
            listener = self.listeners.get(session_key(call.ctx))
            if listener is not None and LEVELS.index(params.level) < LEVELS.index(listener.level):
                return
            if params.level in allowed_log_levels(call.ctx.protocol_version, call.ctx.meta):
                await _notify(call.ctx.session, relayed, call.ctx.request_id)
            return
        for key, listener in list(self.listeners.items()):
            wanted = LEVELS.index(params.level) >= LEVELS.index(listener.level)
            if wanted and self.may_access(listener.identity, server):
                try:
                    await _notify(listener.session, relayed, None)
                except Exception:
                    self.listeners.pop(key, None)

    # ---- requests from upstreams ------------------------------------------------------------

    def route(self, server: str) -> DownstreamCall | None:
        """The client call an upstream's request belongs to (see the module docstring)."""
        call = _current_call.get()
        if call is not None and call.forwarder.gw is self.gw:
            return call
        candidates = [c for c in self.active if self.may_access(c.identity, server)]
        return candidates[0] if len(candidates) == 1 else None

    async def sampling(
        self, server: str, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        call = self.route(server)
        refusal = _cannot_ask(call, "sampling", server)
        if refusal is not None or call is None:
            return refusal or _error("no client")
        request = types.CreateMessageRequest(params=params.model_copy(update={"meta": None}))
        try:
            if params.tools is not None or params.tool_choice is not None:
                return await call.ctx.session.send_request(request, types.CreateMessageResultWithTools,
                                                           metadata=call.related)
            return await call.ctx.session.send_request(request, types.CreateMessageResult, metadata=call.related)
        except MCPError as exc:
            return exc.error
        except ValidationError as exc:
            return _error(f"the client's sampling answer is invalid: {describe_exception(exc)}")

    async def elicitation(self, server: str, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        call = self.route(server)
        refusal = _cannot_ask(call, "elicitation", server)
        if refusal is not None or call is None:
            return refusal or _error("no client")
        request = types.ElicitRequest(params=params.model_copy(update={"meta": None}))
        try:
            return await call.ctx.session.send_request(request, types.ElicitResult, metadata=call.related)
        except MCPError as exc:
            return exc.error
        except ValidationError as exc:
            return _error(f"the client's elicitation answer is invalid: {describe_exception(exc)}")

    def progress_callback(self) -> ProgressFnT | None:
        """Relay an upstream tool's progress to the client's progress token (direct tool calls only)."""
        call = _current_call.get()
        if call is None or call.forwarder.gw is not self.gw or not call.relay_progress:
            return None
        return call.ctx.session.report_progress

    # ---- the middleware that records the call being served ----------------------------------

    async def __call__(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None or ctx.method not in _CALL_METHODS:
            return await call_next(ctx)
        identity = caller(self.gw, ctx)
        name = (ctx.params or {}).get("name")
        relay = (ctx.method == "tools/call" and name not in META_NAMES
                 and ctx.meta is not None and ctx.meta.get("progress_token") is not None)
        call = DownstreamCall(self, ctx, identity, relay)
        token = _current_call.set(call)
        self.active.append(call)
        try:
            with acting_as(identity):
                return await call_next(ctx)
        finally:
            self.active.remove(call)
            _current_call.reset(token)

    @contextlib.asynccontextmanager
    async def audited(self, identity: Identity, kind: str, server: str, name: str,
                      arguments: dict[str, Any]) -> AsyncIterator[list[int]]:
        """One log line and one audit row per resource read or prompt get; yields a list for the result size."""
        started = time.perf_counter()
        sizes: list[int] = []
        outcome, error = "ok", None
        try:
            yield sizes
        except MCPError as exc:
            outcome, error = "error", exc.message
            raise
        finally:
            log.info(f"{kind} forwarded", server=server, name=name, key=identity.name,
                     ms=round((time.perf_counter() - started) * 1000, 2), outcome=outcome)
            await self.gw.auditor.record(identity, kind=kind, server=server, tool=name, arguments=arguments,
                                         outcome=outcome, started=started, result_bytes=sum(sizes), error=error)


class UpstreamHooks:
    """What one upstream's `Client` needs to relay its traffic: set as `Upstream.hooks`."""

    def __init__(self, forwarder: Forwarder, server: str) -> None:
        self.forwarder = forwarder
        self.server = server

    def client_options(self) -> ClientOptions:
        """Callbacks that route to the calling client; `log_level` opts in to logs on 2026-07-28 upstreams."""
        return ClientOptions(sampling_callback=self.sampling, elicitation_callback=self.elicitation,
                             logging_callback=self.logging, message_handler=self.message, log_level="debug")

    def progress_callback(self) -> ProgressFnT | None:
        """For `Client.call_tool(..., progress_callback=...)`: `None` unless the client asked for progress."""
        return self.forwarder.progress_callback()

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        return await self.forwarder.sampling(self.server, params)

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        return await self.forwarder.elicitation(self.server, params)

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        await self.forwarder.log_message(self.server, params)

    async def message(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            await self.forwarder.resource_updated(self.server, message.params.uri)
        elif isinstance(message, types.ResourceListChangedNotification):
            await self.forwarder.list_changed(self.server, ResourcesListChanged())
        elif isinstance(message, types.PromptListChangedNotification):
            await self.forwarder.list_changed(self.server, PromptsListChanged())

    async def event(self, event: ServerEvent) -> None:
        """A change a 2026-07-28 upstream announced on its `subscriptions/listen` stream."""
        if isinstance(event, PromptsListChanged | ResourcesListChanged):
            await self.forwarder.list_changed(self.server, event)
        elif isinstance(event, ResourceUpdated):
            await self.forwarder.resource_updated(self.server, event.uri)


def install_forwarding(server: Server[Any], gw: Gateway, changes: ViewChanges | None = None) -> None:
    """Serve resources, prompts, completions and logging from `gw`'s upstreams, and relay their traffic.

    Idempotent. Call before the gateway starts (the upstreams' clients take the hooks when they connect).
    """
    if any(isinstance(m, Forwarder) for m in server.middleware):
        return
    fw = Forwarder(gw, changes=changes)
    server.middleware.append(fw)
    server.add_request_handler("resources/list", types.PaginatedRequestParams, fw.list_resources)
    server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, fw.list_templates)
    server.add_request_handler("resources/read", types.ReadResourceRequestParams, fw.read_resource)
    server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, fw.subscribe)
    server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, fw.unsubscribe)
    server.add_request_handler("prompts/list", types.PaginatedRequestParams, fw.list_prompts)
    server.add_request_handler("prompts/get", types.GetPromptRequestParams, fw.get_prompt)
    server.add_request_handler("completion/complete", types.CompleteRequestParams, fw.complete)
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, fw.set_level)
    for up in gw.upstreams:
        up.hooks = UpstreamHooks(fw, up.name)


_R = TypeVar("_R", bound=types.Result)


def _own_meta(result: _R) -> _R:
    """Drop the upstream connection's protocol keys (its `serverInfo` stamp); keep the upstream's own `_meta`."""
    if not result.meta:
        return result
    meta = {k: v for k, v in result.meta.items() if not k.startswith("io.modelcontextprotocol/")}
    return result.model_copy(update={"meta": meta or None})


def session_key(ctx: ServerRequestContext[Any]) -> str:
    """One key per client connection: its HTTP session id, or the single stdio client."""
    if ctx.request is None:
        return "stdio"
    session_id = ctx.request.headers.get("mcp-session-id")
    return f"http:{session_id}" if session_id else f"session:{id(ctx.session)}"


def _serves(up: Upstream, feature: str) -> bool:
    client = up.client
    if client is None:
        return False
    caps = client.server_capabilities
    if feature == "subscribe":
        return bool(caps.resources and caps.resources.subscribe)
    return getattr(caps, feature, None) is not None


def _handshake_era(up: Upstream) -> bool:
    client = up.client
    return client is not None and client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS


def _first_of_each(answers: list[tuple[str, list[_T]]], key: Callable[[_T], str]) -> list[tuple[str, _T]]:
    """(server, item) for every item, in order; an item whose key an earlier server listed is left out."""
    seen: set[str] = set()
    listed: list[tuple[str, _T]] = []
    for server, items in answers:
        for item in items:
            if key(item) not in seen:
                seen.add(key(item))
                listed.append((server, item))
    return listed


def _matches(template: str, uri: str) -> bool:
    try:
        return UriTemplate.parse(template).match(uri) is not None
    except (InvalidUriTemplate, ValueError):
        return False


def _error(message: str) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message=f"mcp-gateway: {message}")


def _cannot_ask(call: DownstreamCall | None, what: str, server: str) -> types.ErrorData | None:
    if call is None:
        return _error(f"{server} asked for {what} outside any client call the gateway can attribute it to")
    caps = call.ctx.session.client_capabilities
    if caps is None or getattr(caps, what, None) is None:
        return _error(f"{server} asked for {what}, and the gateway's client does not support it")
    return None


async def _notify(session: ServerSession, params: types.LoggingMessageNotificationParams,
                  related: types.RequestId | None) -> None:
    await session.send_notification(types.LoggingMessageNotification(params=params), related_request_id=related)


async def _pages(fetch: Callable[[str | None], Awaitable[tuple[list[_T], str | None]]]) -> list[_T]:
    items: list[_T] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page, cursor = await fetch(cursor)
        items.extend(page)
        if not cursor:
            break
    return items


async def _list_resources(client: Client) -> list[types.Resource]:
    async def page(cursor: str | None) -> tuple[list[types.Resource], str | None]:
        result = await client.list_resources(cursor=cursor)
        return result.resources, result.next_cursor

    return await _pages(page)


async def _list_templates(client: Client) -> list[types.ResourceTemplate]:
    async def page(cursor: str | None) -> tuple[list[types.ResourceTemplate], str | None]:
        result = await client.list_resource_templates(cursor=cursor)
        return result.resource_templates, result.next_cursor

    return await _pages(page)


async def _list_prompts(client: Client) -> list[types.Prompt]:
    async def page(cursor: str | None) -> tuple[list[types.Prompt], str | None]:
        result = await client.list_prompts(cursor=cursor)
        return result.prompts, result.next_cursor

    return await _pages(page)
