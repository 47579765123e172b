"""Recorded tool catalogs as ToolSpecs, and the anchor's stub format to weigh our stubs against.

`specs` names a recorded `tools/list` result's tools the way the gateway does (`assign_identifiers`).

`anchor_stub` is the anchor's stub format, re-created from its description. REFERENCE.md
section 1 describes it: each file starts with a fixed 7-line comment header (line count, how to
call, where the docs are, a note that descriptions are cut) and a blank line, then one line per
tool, `def tool(required..., optional: T = None) -> dict:  # first sentence`. Types:
string/integer/number/boolean -> str/int/float/bool, arrays `list[T]`, enums `Literal[...]`,
objects plain `dict`; `anyOf`/`oneOf`/`$ref`/type arrays `Any`; the return type always `dict`.
The header wording here is ours; its content and line count follow the description. Names and
first sentences come from our own helpers, so that the comparison measures the format, not the
naming or the summary rule.

Used by `tokens.py` and by the stub tests (`tests/stubs/`), which import it as `benchmarks.catalogs`.
`CATALOG_DIR` is where the recorded catalogs live: `benchmarks/data/` (see its README.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stubs import ToolSpec, assign_identifiers, parameters
from stubs.render import first_sentence

__all__ = ["CATALOG_DIR", "anchor_stub", "anchor_type", "specs"]

CATALOG_DIR = Path(__file__).resolve().parent / "data"
"""Recorded `tools/list` results of public MCP servers, and the three catalog manifests."""


def specs(tools: Sequence[Mapping[str, Any]]) -> list[ToolSpec]:
    """Tools as `tools/list` returns them, as ToolSpecs named the way the gateway names them."""
    ids = assign_identifiers([t["name"] for t in tools])
    return [
        ToolSpec(
            name=t["name"],
            identifier=ids[t["name"]],
            description=t.get("description") or "",
            input_schema=t.get("inputSchema") or {},
            output_schema=t.get("outputSchema"),
        )
        for t in tools
    ]


_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict"}


def anchor_type(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "Any"
    values = schema.get("enum")
    if isinstance(values, list) and values:
        return "Literal[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"
    if any(k in schema for k in ("anyOf", "oneOf", "$ref")):
        return "Any"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"list[{anchor_type(items)}]" if isinstance(items, Mapping) else "list"
    return _SIMPLE.get(kind, "Any") if isinstance(kind, str) else "Any"


def anchor_stub(server: str, tools: Sequence[ToolSpec]) -> str:
    """`servers/<server>.pyi` in the anchor's format."""
    lines = []
    for tool in sorted(tools, key=lambda t: (t.identifier, t.name)):
        args = ", ".join(
            f"{p.identifier}: {anchor_type(p.schema)}" + ("" if p.required else " = None") for p in parameters(tool)
        )
        line = f"def {tool.identifier}({args}) -> dict:"
        summary = first_sentence(tool.description, 10_000)
        lines.append(f"{line}  # {summary}" if summary else line)
    header = [
        f"# servers/{server}.pyi: {len(tools)} tools of the {server} MCP server, {len(lines) + 8} lines.",
        f"# Call a tool inside executeToolCode as {server}.tool_name(arg=value), with keyword arguments only.",
        "# Every tool returns a dict; print it or assign it to result to see what it holds.",
        "# Parameters without a default are required; optional ones default to None.",
        "# Descriptions are cut to their first sentence to keep this file short.",
        f'# For the full description and every argument, call getToolDocs(server="{server}", tool="tool_name").',
        "# Long files can be read in parts with readToolFile(fileName, startLine, endLine).",
        "",
    ]
    return "\n".join(header + lines) + "\n"
