"""Code Mode's four meta-tools: their definitions (kept short: they are sent on every turn) and handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import mcp_types as types

from stubs import FileNotFound, UnknownServer, line_range

from ..catalog import Catalog
from ..errors import UnknownTool
from ..gateway import Gateway
from ..results import text_result
from .scripts import Progress, execute

_ALWAYS_LOAD = {"anthropic/alwaysLoad": True}
MAX_FILES_PER_READ = 20
"""Files one readToolFile call may name."""
MAX_READ_CHARS = 512 * 1024
"""Characters one readToolFile answer may carry; the rest is left out with a note."""
MAX_QUERY_CHARS = 1000
"""Characters of a listToolFiles query that are searched."""


READ_ONLY = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                  open_world_hint=False)
"""The three discovery meta-tools: they read the caller's catalog and nothing else."""
UNKNOWN_EFFECTS = types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                                        open_world_hint=True)
"""executeToolCode before a caller's reachable tools are known: the MCP defaults, spelled out."""


def script_annotations(tools: Iterable[types.Tool], complete: bool = True) -> types.ToolAnnotations:
    """executeToolCode's hints for a caller whose scripts can reach `tools` (its code-mode tools).

    An unannotated tool, or a missing hint, counts as the MCP default (not read-only, destructive,
    open-world). Read-only only when every reachable tool says read-only; destructive when any
    tool that writes is (a read-only tool's destructiveHint means nothing); open-world when any
    reachable tool is. `complete=False` (a code-mode server the caller may use is not connected,
    so its tools are unknown) gives `UNKNOWN_EFFECTS`: a script could reach it once it connects.
    """
    if not complete:
        return UNKNOWN_EFFECTS
    hints = [t.annotations or types.ToolAnnotations() for t in tools]
    writes = [h for h in hints if h.read_only_hint is not True]
    if not writes and all(h.open_world_hint is False for h in hints):
        return READ_ONLY
    return types.ToolAnnotations(
        read_only_hint=not writes,
        destructive_hint=any(h.destructive_hint is not False for h in writes),
        idempotent_hint=not writes,  # a script of idempotent writes is not itself idempotent
        open_world_hint=any(h.open_world_hint is not False for h in hints),
    )


def _string(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


META_TOOLS: tuple[types.Tool, ...] = (
    types.Tool(
        name="listToolFiles",
        description=(
            "Start here: the stub files of the tools executeToolCode scripts can call, one line per server. "
            "server= lists its tools; query= searches all tools, best first."
        ),
        input_schema={"type": "object", "properties": {"server": {"type": "string"}, "query": {"type": "string"}}},
        annotations=READ_ONLY,
        _meta=_ALWAYS_LOAD,
    ),
    types.Tool(
        name="readToolFile",
        description=(
            "Read stub files (whole, or lines startLine..endLine): typed Python signatures of the tools, "
            "with defaults and one-line summaries."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "fileName": _string("Path as listed (servers/github.pyi) or one tool (github.get_me); "
                                    "several: comma-separated"),
                "startLine": {"type": "integer"},
                "endLine": {"type": "integer"},
            },
            "required": ["fileName"],
        },
        annotations=READ_ONLY,
        _meta=_ALWAYS_LOAD,
    ),
    types.Tool(
        name="getToolDocs",
        description=(
            "One tool in full: description, parameters (type, default, constraints, nested fields), "
            "output type, example call."
        ),
        input_schema={
            "type": "object",
            "properties": {"server": {"type": "string"}, "tool": _string("Name as in the stub")},
            "required": ["server", "tool"],
        },
        annotations=READ_ONLY,
        _meta=_ALWAYS_LOAD,
    ),
    types.Tool(
        name="executeToolCode",
        description=(
            "Run a Starlark (Python dialect) script calling tools; only its prints and `result` come back, "
            "so filter and combine data in the script.\n"
            "- Call tools as server.tool(arg=value), keyword arguments only, names as in the stubs. "
            'Results are plain JSON values: r["key"], not r.key.\n'
            "- Return data by assigning result = ...; print() for notes.\n"
            "- A failing call stops the script with an error; "
            'try_call("server.tool", arg=value) returns {"ok": True, "value": v} or '
            '{"ok": False, "error": msg} instead.\n'
            '- parallel([("server.tool", {"arg": 1}), ...]) runs calls at once, returns their values in '
            'order, stops at a failure; try_parallel(...) gives {"ok": ..., "value"|"error": ...} per call.\n'
            "- Helpers: json_encode(v), json_decode(s).\n"
            "- Not Python: no import, class, try/except, f-strings or **; strings are not iterable "
            "(s.elems())."
        ),
        input_schema={
            "type": "object",
            "properties": {"code": _string("Starlark source")},
            "required": ["code"],
        },
        annotations=UNKNOWN_EFFECTS,
        _meta=_ALWAYS_LOAD,
    ),
)
META_NAMES = frozenset(t.name for t in META_TOOLS)


def meta_tools(catalog: Catalog) -> list[types.Tool]:
    """META_TOOLS as `catalog`'s caller is sent them: executeToolCode hinted by what its scripts can reach.

    Derived from the catalog alone, so a caller's tool list (and its list_changed digest) is the
    same on every listing until the catalog changes.
    """
    reachable = [e.tool for e in catalog.entries if e.direct_name is None]
    complete = all(s.status == "ok" for s in catalog.code_servers)
    hints = script_annotations(reachable, complete)
    return [t.model_copy(update={"annotations": hints}) if t.name == "executeToolCode" else t for t in META_TOOLS]


Handler = Callable[[Gateway, Mapping[str, Any], Progress | None], Awaitable[types.CallToolResult]]


async def list_tool_files(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    files = gw.catalog.files
    try:
        query = _text(args.get("query"))
        listing = files.listing(server=_text(args.get("server")), query=query[:MAX_QUERY_CHARS] if query else query)
    except UnknownServer as exc:
        return text_result(str(exc), is_error=True)
    if listing:
        return text_result(listing)
    if gw.config.servers and any(gw.config.mode_of(s) == "code" for s in gw.config.servers.values()):
        return text_result("No code-mode server is visible to this key: its team and groups allow none of their "
                           "tools (an admin changes [groups] and [teams], then restarts the gateway).")
    return text_result("No code-mode servers are configured.")


async def read_tool_file(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    """One file, or several (comma-separated or a list), each cut to startLine..endLine if given."""
    files = gw.catalog.files
    names = _file_names(args.get("fileName"))
    start, end = _line(args.get("startLine")), _line(args.get("endLine"))
    if not names:
        return text_result(str(FileNotFound("", files.paths(), "fileName is empty")), is_error=True)
    if len(names) > MAX_FILES_PER_READ:
        return text_result(f"readToolFile reads at most {MAX_FILES_PER_READ} files per call; {len(names)} were named: "
                           "read them in several calls, or a whole server's file (servers/<name>.pyi)", is_error=True)
    parts: list[str] = []
    failed = 0
    for name in names:
        try:
            parts.append(line_range(files.read(name), start, end, name))
        except FileNotFound as exc:
            failed += 1
            parts.append(str(exc) if len(names) == 1 else f"# {exc}\n")
    text = "\n\n".join(p.rstrip("\n") for p in parts) + "\n"
    if len(text) > MAX_READ_CHARS:
        text = (text[:MAX_READ_CHARS] + f"\n# [{len(text) - MAX_READ_CHARS} more characters left out: "
                "read fewer files, or lines startLine..endLine]\n")
    return text_result(text, is_error=failed == len(names))


async def get_tool_docs(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    catalog = gw.catalog
    server, tool = str(args.get("server", "")), str(args.get("tool", ""))
    if "." in tool and not server:
        server, _, tool = tool.partition(".")
    entry = catalog.resolve_ref(server, tool)
    if entry is None:
        return text_result(str(UnknownTool(f"{server}.{tool}", catalog.code_refs())), is_error=True)
    return text_result(catalog.files.docs(entry.server, entry.spec))


def _text(value: Any) -> str | None:
    """A string argument, or None for anything else; `ToolFiles.listing` treats blank as absent itself."""
    return value if isinstance(value, str) else None


def _file_names(value: Any) -> list[str]:
    """`"a.pyi"`, `"a.pyi, b.pyi"` or `["a.pyi", "b.pyi"]` -> the names, in order, without repeats."""
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    names = [n.strip() for item in items if isinstance(item, str) for n in item.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def _line(value: Any) -> int | None:
    """A line number as models send it: an int, or digits in a string; anything else means none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


async def execute_tool_code(gw: Gateway, args: Mapping[str, Any], progress: Progress | None) -> types.CallToolResult:
    code = args.get("code")
    if not isinstance(code, str):  # a blank script runs: it says, like any other, how to return data
        return text_result("executeToolCode needs `code`: a Starlark script", is_error=True)
    return await execute(gw, code, progress)


HANDLERS: dict[str, Handler] = {
    "listToolFiles": list_tool_files,
    "readToolFile": read_tool_file,
    "getToolDocs": get_tool_docs,
    "executeToolCode": execute_tool_code,
}
