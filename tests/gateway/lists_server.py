"""A fixture upstream whose prompts and resources change on request, announcing each change once.

Run: python lists_server.py [stdio | http PORT] [--legacy]

The tool `change(kind)` adds a prompt (`kind = "prompts"`) or a resource (`"resources"`) and announces
it the way each era expects: on every `subscriptions/listen` stream that asked for that kind
(2026-07-28), or as `notifications/<kind>/list_changed` on the call's own stream (2025-11-25). So
one call is one announcement, and a client that hears of it twice heard a copy made on the way.

`--legacy` refuses `server/discover`, so clients speak 2025-11-25 (as `tests/fixtures/updating_server.py`).
Written on the SDK's low-level `Server`, which derives `listChanged` from its listen handler.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, PromptsListChanged, ResourcesListChanged
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

Ctx = ServerRequestContext[Any]

prompts = ["first"]
notes = ["note://first"]
bus = InMemorySubscriptionBus()

CHANGE = types.Tool(name="change", description="Add a prompt or a resource and announce it.",
                    input_schema={"type": "object", "properties": {"kind": {"enum": ["prompts", "resources"]}},
                                  "required": ["kind"]})


async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[CHANGE])


async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    kind = (params.arguments or {}).get("kind")
    if kind == "prompts":
        prompts.append(f"p{len(prompts)}")
        event: PromptsListChanged | ResourcesListChanged = PromptsListChanged()
        notice: types.ServerNotification = types.PromptListChangedNotification()
    else:
        notes.append(f"note://n{len(notes)}")
        event, notice = ResourcesListChanged(), types.ResourceListChangedNotification()
    if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        await ctx.session.send_notification(notice, related_request_id=ctx.request_id)
    else:
        await bus.publish(event)
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"changed {kind}")])


async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=[types.Prompt(name=name) for name in prompts])


async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    text = types.TextContent(type="text", text=params.name)
    return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=text)])


async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=[types.Resource(uri=uri, name=uri) for uri in notes])


async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=params.uri, text=params.uri)])


def build() -> Server[Any]:
    server = Server("lists", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool,
                    on_list_prompts=list_prompts, on_get_prompt=get_prompt, on_list_resources=list_resources,
                    on_read_resource=read_resource, on_subscriptions_listen=ListenHandler(bus))
    return server


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fixtures.lowlevel import serve

    serve(build())


if __name__ == "__main__":
    main()
