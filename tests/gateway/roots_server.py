"""A fixture upstream that asks its client for roots, and tells what it was given.

Run: python roots_server.py [stdio | http PORT] [--legacy]

- `roots()`: JSON `{"declared": <did the client declare the roots capability>, "roots": [<uri>, ...]}`,
  asking with `roots/list` only when it was declared (mid-call on 2025-11-25; on 2026-07-28 an
  input-required result, answered on the retry). A failed `roots/list` gives `"error": <message>`.
- `at_connect()`: JSON list of what each `roots/list` asked at `notifications/initialized` got (the
  way the filesystem server asks; 2025-11-25 only, since 2026-07-28 has no such request outside a call).

`--legacy` refuses `server/discover`, so clients speak 2025-11-25 (as `rounds_server.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

Ctx = ServerRequestContext[Any]
NO_ARGUMENTS = {"type": "object", "properties": {}}
TOOLS = [
    types.Tool(name="roots", description="The client's roots as given here.", input_schema=NO_ARGUMENTS),
    types.Tool(name="at_connect", description="What roots/list at connect got.", input_schema=NO_ARGUMENTS),
]
at_connect: list[Any] = []


async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult | types.InputRequiredResult:
    if params.name == "at_connect":
        return _text(json.dumps(at_connect))
    caps = ctx.session.client_capabilities
    declared = caps is not None and caps.roots is not None
    found: dict[str, Any] = {"declared": declared}
    if not declared:
        return _text(json.dumps(found))
    if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        try:
            answer: Any = await ctx.session.send_request(types.ListRootsRequest(), types.ListRootsResult,
                                                         metadata=metadata)
        except MCPError as exc:
            return _text(json.dumps({**found, "error": exc.message}))
    else:
        answer = (params.input_responses or {}).get("roots")
        if answer is None:
            return types.InputRequiredResult(input_requests={"roots": types.ListRootsRequest()})
        if not isinstance(answer, types.ListRootsResult):
            return _text(json.dumps({**found, "error": f"not roots: {answer!r}"}))
    return _text(json.dumps({**found, "roots": [str(r.uri) for r in answer.roots]}))


async def initialized(ctx: Ctx, params: types.NotificationParams) -> None:
    """Ask for roots as soon as the session is up, outside any call, when the client declared them."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.roots is None:
        return
    try:
        answer = await ctx.session.send_request(types.ListRootsRequest(), types.ListRootsResult)
        at_connect.append([str(r.uri) for r in answer.roots])
    except MCPError as exc:
        at_connect.append({"error": exc.message})


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def build() -> Server[Any]:
    server = Server("roots", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
    server.add_notification_handler("notifications/initialized", types.NotificationParams, initialized)
    return server


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fixtures.lowlevel import serve

    serve(build())


if __name__ == "__main__":
    main()
