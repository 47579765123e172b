"""The gateway as an MCP server: the SDK's low-level `Server`, served over streamable HTTP or stdio."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import NoBackChannelError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response

from . import __version__
from .auth import KeyAuth, identity_of_request
from .codemode import HANDLERS, META_NAMES, META_TOOLS
from .errors import GatewayError, UnknownTool
from .gateway import Gateway
from .policy import NOBODY, Identity, acting_as
from .quotas import Approver, current_approver
from .results import text_result
from .scripts import Progress
from .tokens import tool_definition_tokens

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_server(gw: Gateway) -> Server[Any]:
    """An MCP server whose lifespan is the gateway's: upstreams connect when it starts serving."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        async with gw:
            yield {}

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        with acting_as(_caller(gw, ctx)):
            tools = visible_tools(gw)
            if any(t.name in META_NAMES for t in tools):
                gw.metrics.tokens_saved.inc(max(0, gw.classic_tokens() - _meta_tokens(gw.config.gateway.name)))
            return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        token = current_approver.set(_elicitation_approver(ctx))
        try:
            with acting_as(_caller(gw, ctx)):
                return await dispatch_call(gw, params.name, params.arguments or {}, ctx.session.report_progress)
        finally:
            current_approver.reset(token)

    return Server(
        gw.config.gateway.name,
        version=__version__,
        title="mcp-gateway",
        instructions=_INSTRUCTIONS if gw.config.servers else None,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


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


def _caller(gw: Gateway, ctx: ServerRequestContext[Any]) -> Identity:
    """HTTP: what the key middleware attached to the request; stdio: the gateway's local caller."""
    if ctx.request is not None:
        return identity_of_request(ctx.request) or NOBODY
    return gw.stdio_identity


_INSTRUCTIONS = (
    "Tools of the code-mode servers are not listed directly: call listToolFiles, read the stub you need "
    "with readToolFile, then call them from a script with executeToolCode."
)


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
