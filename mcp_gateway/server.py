"""The gateway as an MCP server: the SDK's low-level `Server`, served over streamable HTTP or stdio."""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import structlog
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import ListenHandler
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import NoBackChannelError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response

from . import __version__
from .auth import KeyAuth, caller
from .changes import ViewChanges
from .codemode import HANDLERS, META_NAMES, META_TOOLS
from .errors import GatewayError, UnknownTool
from .forwarding import install_forwarding, session_key
from .gateway import Gateway
from .policy import acting_as
from .quotas import Approver, current_approver
from .results import text_result
from .scripts import Progress
from .tokens import tool_definition_tokens

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
log = structlog.get_logger("mcp_gateway.server")


def build_server(gw: Gateway) -> Server[Any]:
    """An MCP server whose lifespan is the gateway's: upstreams connect when it starts serving."""

    changes = ViewChanges(lambda: visible_tools(gw), lambda: gw.identity, lambda: gw.full_catalog)
    gw.catalog_listeners.append(changes.changed)
    listen = ListenHandler(changes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        async with gw, anyio.create_task_group() as tg:
            tg.start_soon(changes.run)
            yield {}
            listen.close()
            tg.cancel_scope.cancel()

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        identity = caller(gw, ctx)
        with acting_as(identity):
            tools = visible_tools(gw)
            if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                changes.listed(session_key(ctx), ctx.session, identity)
            if any(t.name in META_NAMES for t in tools):
                gw.metrics.tokens_saved.inc(max(0, gw.classic_tokens() - _meta_tokens(gw.config.gateway.name)))
            return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        token = current_approver.set(_elicitation_approver(ctx))
        gw.calls_in_flight += 1
        try:
            with acting_as(caller(gw, ctx)):
                return await dispatch_call(gw, params.name, params.arguments or {}, ctx.session.report_progress)
        finally:
            gw.calls_in_flight -= 1
            current_approver.reset(token)

    async def subscriptions_listen(
        ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        with acting_as(caller(gw, ctx)):
            return await listen(ctx, params)

    server = _GatewayServer(
        gw,
        gw.config.gateway.name,
        version=__version__,
        title="mcp-gateway",
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=subscriptions_listen,
    )
    install_forwarding(server, gw, changes)
    return server


class _GatewayServer(Server[Any]):
    """Our instructions with the upstreams' own, and `listChanged` for handshake-era clients.

    (The 2026-07-28 era derives `listChanged` from the `subscriptions/listen` handler.)
    """

    def __init__(self, gw: Gateway, name: str, **options: Any) -> None:
        self.gw = gw
        super().__init__(name, **options)

    @property
    def instructions(self) -> str | None:
        return upstream_instructions(self.gw)

    @instructions.setter
    def instructions(self, value: str | None) -> None:
        """`Server.__init__` assigns it; the text is always composed from the gateway instead."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(
            tools_changed=True, prompts_changed=True, resources_changed=True)
        return super().create_initialization_options(options, experimental_capabilities, extensions)


def _elicitation_approver(ctx: ServerRequestContext[Any]) -> Approver:
    """Ask the user of the requesting session with a form elicitation that has no fields."""

    async def approve(message: str) -> str:
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            return "unsupported"
        try:
            answer = await ctx.session.elicit_form(message, {"type": "object", "properties": {}})
        except NoBackChannelError:
            return "unsupported"
        return answer.action

    return approve


@functools.cache
def _meta_tokens(gateway_name: str) -> int:
    return tool_definition_tokens(META_TOOLS, f"mcp__{gateway_name}__")


_INSTRUCTIONS = (
    "Tools of the code-mode servers are not listed directly: call listToolFiles, read the stub you need "
    "with readToolFile, then call them from a script with executeToolCode."
)


MAX_UPSTREAM_INSTRUCTIONS = 1000
MAX_INSTRUCTIONS = 2048  # what Claude Code keeps of a server's instructions


def upstream_instructions(gw: Gateway) -> str | None:
    """How to use the gateway, then each ready upstream's own instructions under its name.

    Each is cut to 1,000 characters and the whole to 2,048 (servers that do not fit are counted).

    Sent at initialize, before any key's view is known: with keys configured, upstreams' instructions
    are left out, since they could name servers a key may not see.
    """
    if not gw.config.servers:
        return None
    parts = [_INSTRUCTIONS]
    left_out = 0
    for up in gw.upstreams if gw.keys.is_open() else ():
        text = (up.instructions or "").strip() if up.state == "ready" else ""
        if not text:
            continue
        cut = text if len(text) <= MAX_UPSTREAM_INSTRUCTIONS else text[:MAX_UPSTREAM_INSTRUCTIONS] + " [cut]"
        part = f"## Server {up.name} ({gw.config.mode_of(up.config)} mode) says:\n{cut}"
        if sum(len(p) + 2 for p in parts) + len(part) > MAX_INSTRUCTIONS - 80:
            left_out += 1
        else:
            parts.append(part)
    if left_out:
        parts.append(f"({left_out} more servers' instructions left out: clients keep {MAX_INSTRUCTIONS} characters)")
    return "\n\n".join(parts)


def visible_tools(gw: Gateway) -> list[types.Tool]:
    """The four meta-tools (when any server is in code mode), then direct-mode tools under their names."""
    tools: list[types.Tool] = []
    if any(gw.config.mode_of(s) == "code" for s in gw.config.servers.values()):
        tools.extend(META_TOOLS)
    for name, entry in gw.catalog.by_direct_name.items():
        if name not in META_NAMES:
            tools.append(entry.tool.model_copy(update={"name": name}))
    return tools


async def dispatch_call(
    gw: Gateway, name: str, arguments: dict[str, Any], progress: Progress | None = None
) -> types.CallToolResult:
    """Route a `tools/call`: a meta-tool, or a direct-mode tool through the one call path."""
    handler = HANDLERS.get(name)
    if handler is not None:
        started = time.perf_counter()
        result = await handler(gw, arguments, progress)
        await gw.auditor.record(gw.identity, kind="meta", server=None, tool=name, arguments=arguments,
                                outcome="error" if result.is_error else "ok", started=started,
                                result_bytes=sum(len(getattr(b, "text", "")) for b in result.content))
        return result
    catalog = gw.catalog
    entry = catalog.by_direct_name.get(name)
    if entry is None:
        return text_result(str(UnknownTool(name, [t.name for t in visible_tools(gw)])), is_error=True)
    try:
        return await gw.call_tool(entry, arguments)
    except GatewayError as exc:
        return text_result(str(exc), is_error=True)


def build_app(gw: Gateway, *, host: str = "127.0.0.1") -> Starlette:
    """A Starlette app serving `/mcp` (streamable HTTP, both protocol eras) and `/healthz`."""
    server = build_server(gw)
    security = None
    if host in _LOCAL_HOSTS:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    manager = StreamableHTTPSessionManager(app=server, security_settings=security)
    mcp_app = KeyAuth(StreamableHTTPASGIApp(manager), gw.keys, {n: g.tools for n, g in gw.config.groups.items()})

    async def healthz(request: Request) -> JSONResponse:
        ups = {u.name: u.status for u in gw.upstreams}
        return JSONResponse({"status": "ok", "upstreams": ups})

    async def metrics(request: Request) -> Response:
        for up in gw.upstreams:
            gw.metrics.upstream_up.labels(up.name).set(1 if up.state == "ready" else 0)
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    return Starlette(
        routes=[
            Route("/mcp", mcp_app),
            Route("/mcp/{group}", mcp_app),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", KeyAuth(request_response(metrics), gw.keys, {}), methods=["GET"]),
        ],
        lifespan=lambda app: manager.run(),
    )


async def serve_stdio(gw: Gateway) -> None:
    """Serve the gateway over this process's stdin/stdout."""
    server = build_server(gw)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(gw: Gateway, host: str, port: int) -> None:
    """Serve `build_app(gw)` with uvicorn until SIGINT or SIGTERM, then shut down gracefully.

    Shutdown stops accepting connections, lets the tool calls in flight finish (at most
    `gateway.shutdown_grace_s`), ends the remaining event streams, then closes the upstreams.
    """
    AppStatus.enable_automatic_graceful_drain = False  # the SDK's SSE responses would end at once otherwise
    grace = gw.config.gateway.shutdown_grace_s
    config = uvicorn.Config(build_app(gw, host=host), host=host, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=int(grace) + 1)
    await _DrainingServer(config, gw).serve()


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gw: Gateway) -> None:
        super().__init__(config)
        self.gw = gw

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._drain)
            await super().shutdown(sockets)

    async def _drain(self) -> None:
        with anyio.move_on_after(self.gw.config.gateway.shutdown_grace_s):
            await self.gw.wait_idle()
        if self.gw.calls_in_flight:
            log.warning("shutting down with tool calls in flight", calls=self.gw.calls_in_flight)
        else:
            await anyio.sleep(0.25)  # let the last results reach their clients before the streams end
        AppStatus.should_exit = True  # ends the event streams still open (idle GET streams)
