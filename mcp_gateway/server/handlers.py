"""The gateway as an MCP server: the SDK's low-level `Server` with the gateway's handlers.

Tools are answered here (`tools/list`, `tools/call`, `subscriptions/listen`); resources, prompts,
completions and logging by the gateway's shared state (see `shared.py`). The caller of every
request is bound by the `Entry` middleware before any handler runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from .._version import __version__
from ..codemode import META_NAMES, META_TOOLS
from ..gateway import Gateway
from ..governance.rounds import InputNeeded, Round, current_round
from ..naming import client_prefix
from ..results import text_result, wire_form
from ..tokens import definition_tokens
from ..tools import dispatch_call, visible_tools
from .encoded import wire_form_for
from .entry import Entry
from .sessions import session_key
from .shared import shared_state

_INSTRUCTIONS = (
    "Tools of the code-mode servers are not listed directly: call listToolFiles, read the stub you need "
    "with readToolFile, then call them from a script with executeToolCode."
)
MAX_UPSTREAM_INSTRUCTIONS = 1000
MAX_INSTRUCTIONS = 2048  # what Claude Code keeps of a server's instructions


def build_server(gw: Gateway) -> Server[Any]:
    """An MCP server whose lifespan is the gateway's: upstreams connect when it starts serving."""
    state = shared_state(gw)
    listen = ListenHandler(state.changes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        async with gw:
            yield {}
            listen.close()

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = visible_tools(gw)
        if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
            state.changes.listed(session_key(ctx), ctx.session, gw.identity)
        if any(t.name in META_NAMES for t in tools):
            sent, full = await _meta_tokens(gw.config.gateway.name), await gw.classic_tokens()
            gw.metrics.tokens_saved.inc(max(0, full - sent))
            gw.token_savings.book(gw.identity.name, sent, full)
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> dict[str, Any]:
        gw.calls_in_flight += 1
        try:
            result = await dispatch_call(gw, params.name, params.arguments or {}, ctx.session.report_progress)
            return await wire_form_for(result, ctx.request)  # big structured content encoded in steps, not by the SDK
        except InputNeeded as need:  # a 2026-07-28 client asks the user, then retries this call with the answer
            current = current_round() or Round()
            try:
                state = current.state_for(need)
            except ValueError as exc:
                return wire_form(text_result(f"{params.name} needs the user's input and cannot ask again: {exc}",
                                             is_error=True))
            return types.InputRequiredResult.model_validate(
                {"inputRequests": need.requests, "requestState": state}
            ).model_dump(by_alias=True, mode="json", exclude_none=True)
        finally:
            gw.calls_in_flight -= 1

    server = _GatewayServer(
        gw,
        gw.config.gateway.name,
        version=__version__,
        title="mcp-gateway",
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_subscriptions_listen=state.resources.listening(listen),
    )
    server.middleware.append(Entry(gw, state.relay))
    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)  # a dict: not on_call_tool
    resources, prompts = state.resources, state.prompts
    server.add_request_handler("resources/list", types.PaginatedRequestParams, resources.list_resources)
    server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, resources.list_templates)
    server.add_request_handler("resources/read", types.ReadResourceRequestParams, resources.read_resource)
    server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, resources.subscribe)
    server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, resources.unsubscribe)
    server.add_request_handler("prompts/list", types.PaginatedRequestParams, prompts.list_prompts)
    server.add_request_handler("prompts/get", types.GetPromptRequestParams, prompts.get_prompt)
    server.add_request_handler("completion/complete", types.CompleteRequestParams, prompts.complete)
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, state.relay.set_level)
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


_META_TOKENS: dict[str, int] = {}


async def _meta_tokens(gateway_name: str) -> int:
    if gateway_name not in _META_TOKENS:
        _META_TOKENS[gateway_name] = await definition_tokens(META_TOOLS, client_prefix(gateway_name))
    return _META_TOKENS[gateway_name]


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
