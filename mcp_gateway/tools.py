"""The tools a caller is offered, and routing a `tools/call` by name (the embedding API's `list_tools` and `call`)."""

from __future__ import annotations

import uuid
from typing import Any

import mcp_types as types

from .calls import NotFound, call_tool
from .codemode import HANDLERS, META_NAMES, Progress
from .codemode.metatools import meta_tools
from .errors import GatewayError, UpstreamUnavailable
from .gateway import Gateway
from .governance.audit import in_execution
from .naming import clean_name
from .results import own_meta, text_result


def visible_tools(gw: Gateway) -> list[types.Tool]:
    """The four meta-tools (when any server is in code mode), then direct-mode tools under their names.

    executeToolCode's annotations are the caller's: derived from the code-mode tools its scripts can
    reach (`meta_tools`); direct-mode tools keep their upstream's annotations.
    """
    tools: list[types.Tool] = []
    if any(gw.config.mode_of(s) == "code" for s in gw.config.servers.values()):
        tools.extend(meta_tools(gw.catalog))
    for name, entry in gw.catalog.by_direct_name.items():
        if name not in META_NAMES:
            tools.append(entry.tool.model_copy(update={"name": name}))
    return tools


async def dispatch_call(
    gw: Gateway, name: str, arguments: dict[str, Any], progress: Progress | None = None
) -> types.CallToolResult:
    """A meta-tool (observed here), or a direct-mode tool through the one call path.

    A script's run gets its execution id here, so its own row and its tool calls' rows share it.
    """
    try:
        handler = HANDLERS.get(name)
        if handler is None:
            target = gw.catalog.by_direct_name.get(name)
            down = [up for up in gw.upstreams if target is None and up.state != "ready"
                    and gw.config.gateway.prefix_direct_tools and gw.config.mode_of(up.config) == "direct"
                    and name.startswith(f"{clean_name(up.name)}_") and gw.identity.may_see_server(up.name)]
            refusal = None
            if down:  # a tool of a direct-mode server that is down, named as it was listed
                comes_back = "its tools come back when it reconnects" if down[0].config.enabled else "it is disabled"
                refusal = UpstreamUnavailable(down[0].name, down[0].reason, comes_back)
            known = [t.name for t in visible_tools(gw)]
            result = await call_tool(gw, target or NotFound(name, known, refusal), arguments)
            return own_meta(result)  # without the upstream connection's protocol _meta keys
        with in_execution(uuid.uuid4().hex[:12] if name == "executeToolCode" else None):
            async with gw.observer.observed(gw.identity, "meta", None, name, arguments, "client") as seen:
                await gw.quota.check_rate(gw.identity, "meta_calls")
                result = await handler(gw, arguments, progress)
                seen.result(result)
        return result
    except GatewayError as exc:
        return text_result(str(exc), is_error=True)
