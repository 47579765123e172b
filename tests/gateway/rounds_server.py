"""A fixture upstream whose tools report progress, ask the user, run long, and tell what became of each call.

Run: python rounds_server.py [stdio | http PORT] [--legacy]

- `work(seconds)`: progress "working", sleeps, progress "worked", answers "worked".
- `ask(seconds)`: progress "asking", asks the user a question (an input-required result on
  2026-07-28, answered on the retry; an elicitation request mid-call on 2025-11-25), progress
  "answered <action>", sleeps, answers "answered <action>".
- `events()`: what happened so far, in order, as JSON: "<tool> started", "<tool> cancelled" (the
  call was cancelled while it slept), "<tool> done".

`--legacy` refuses `server/discover`, so clients speak 2025-11-25 (as `tests/fixtures/updating_server.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

Ctx = ServerRequestContext[Any]

events: list[str] = []
SECONDS = {"type": "object", "properties": {"seconds": {"type": "number"}}}
TOOLS = [
    types.Tool(name="work", description="Report progress and sleep.", input_schema=SECONDS),
    types.Tool(name="ask", description="Ask the user, then sleep.", input_schema=SECONDS),
    types.Tool(name="events", description="What happened so far.", input_schema={"type": "object", "properties": {}}),
]
QUESTION = types.ElicitRequest(params=types.ElicitRequestFormParams(
    message="Go on?", requested_schema={"type": "object", "properties": {}}))


async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult | types.InputRequiredResult:
    if params.name == "events":
        return _text(json.dumps(events))
    seconds = float((params.arguments or {}).get("seconds", 0))
    if params.name == "work":
        await ctx.session.report_progress(1, 2, "working")
        await _sleep("work", seconds)
        await ctx.session.report_progress(2, 2, "worked")
        return _text("worked")
    await ctx.session.report_progress(1, 3, "asking")
    if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        answer: Any = await ctx.session.send_request(QUESTION, types.ElicitResult, metadata=metadata)
    else:
        answer = (params.input_responses or {}).get("ask")
        if answer is None:
            return types.InputRequiredResult(input_requests={"ask": QUESTION})
    action = answer.action if isinstance(answer, types.ElicitResult) else dict(answer).get("action")
    await ctx.session.report_progress(2, 3, f"answered {action}")
    await _sleep("ask", seconds)
    await ctx.session.report_progress(3, 3, "done")
    return _text(f"answered {action}")


async def _sleep(tool: str, seconds: float) -> None:
    events.append(f"{tool} started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        events.append(f"{tool} cancelled")
        raise
    events.append(f"{tool} done")


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def build() -> Server[Any]:
    server = Server("rounds", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
    return server


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fixtures.lowlevel import serve

    serve(build())


if __name__ == "__main__":
    main()
