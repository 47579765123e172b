"""Code Mode's four meta-tools: their definitions (kept short: they are sent on every turn) and handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types

from stubs.render import render_docs
from stubs.vfs import FileNotFound

from .errors import UnknownTool
from .gateway import Gateway
from .results import text_result
from .scripts import Progress, execute

_ALWAYS_LOAD = {"anthropic/alwaysLoad": True}


def _string(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


META_TOOLS: tuple[types.Tool, ...] = (
    types.Tool(
        name="listToolFiles",
        description=(
            "List the stub files describing the tools that executeToolCode scripts can call, "
            "one line per file with tool count and status. Start here."
        ),
        input_schema={"type": "object", "properties": {}},
        _meta=_ALWAYS_LOAD,
    ),
    types.Tool(
        name="readToolFile",
        description=(
            "Read a stub file from listToolFiles: Python signatures of the tools "
            "(typed parameters, defaults, return type, one-line summary)."
        ),
        input_schema={
            "type": "object",
            "properties": {"fileName": _string("Path as listed, e.g. servers/github.pyi")},
            "required": ["fileName"],
        },
        _meta=_ALWAYS_LOAD,
    ),
    types.Tool(
        name="getToolDocs",
        description=(
            "Full docs of one tool: description, each parameter's type, default and constraints, "
            "output type, and an example call."
        ),
        input_schema={
            "type": "object",
            "properties": {"server": _string("Server name"), "tool": _string("Tool name as in the stub")},
            "required": ["server", "tool"],
        },
        _meta=_ALWAYS_LOAD,
    ),
    types.Tool(
        name="executeToolCode",
        description=(
            "Run a Starlark (Python dialect) script that calls tools; only what it prints and its `result` "
            "come back, so filter and combine data inside the script.\n"
            "- Call tools as server.tool(name=value), keyword arguments only, names as in the stubs. "
            "Results are plain values (dict, list, str, int, float, bool, None).\n"
            "- Return data by assigning result = ...; print() for notes.\n"
            "- A failing call stops the script with an error naming the tool; "
            'try_call("server.tool", name=value) returns {"ok": True, "value": v} or '
            '{"ok": False, "error": msg} instead.\n'
            "- Helpers: json_encode(v), json_decode(s).\n"
            "- Not Python: no import, class, try/except, f-strings or **; use for loops over ranges; "
            "strings are not iterable (use s.elems())."
        ),
        input_schema={
            "type": "object",
            "properties": {"code": _string("Starlark source")},
            "required": ["code"],
        },
        _meta=_ALWAYS_LOAD,
    ),
)
META_NAMES = frozenset(t.name for t in META_TOOLS)

Handler = Callable[[Gateway, Mapping[str, Any], Progress | None], Awaitable[types.CallToolResult]]


async def list_tool_files(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    listing = gw.catalog.files.listing()
    return text_result(listing or "No code-mode servers are configured.")


async def read_tool_file(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    try:
        return text_result(gw.catalog.files.read(str(args.get("fileName", ""))))
    except FileNotFound as exc:
        return text_result(str(exc), is_error=True)


async def get_tool_docs(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    catalog = gw.catalog
    server, tool = str(args.get("server", "")), str(args.get("tool", ""))
    if "." in tool and not server:
        server, _, tool = tool.partition(".")
    entry = catalog.resolve_ref(server, tool)
    if entry is None:
        return text_result(str(UnknownTool(f"{server}.{tool}", catalog.code_refs())), is_error=True)
    return text_result(render_docs(server, entry.spec))


async def execute_tool_code(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    code = args.get("code")
    if not isinstance(code, str) or not code.strip():
        return text_result("executeToolCode needs `code`: a non-empty Starlark script", is_error=True)
    return await execute(gw, code, progress)


HANDLERS: dict[str, Handler] = {
    "listToolFiles": list_tool_files,
    "readToolFile": read_tool_file,
    "getToolDocs": get_tool_docs,
    "executeToolCode": execute_tool_code,
}
