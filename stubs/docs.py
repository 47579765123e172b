"""Full documentation of one tool, for `getToolDocs`.

The stub only has room for a signature and a summary; when a call needs more (what a nested
object looks like, allowed values, ranges, formats), the model asks for the docs. They are read
once per tool, so they may be complete, but they stay plain text with one line per field.

Every type is the stub's own: a parameter's and the result's are read from the tool's `def`
line, and the fields inside them are listed as the stub's classes type them (`stubs.fields`,
which also bounds that listing).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from .constraints import short
from .fields import MAX_FIELD_CHARS, MAX_FIELD_LINES, MAX_UNION_NESTING, Budget, Fields, annotate
from .nodes import effective, is_null, is_number
from .render import StubTypes, stub_order, stub_types
from .schema import Renderer, py_literal
from .tool import Param, ToolSpec, parameters, properties_of, required_of

__all__ = ["example_call", "render_docs", "tool_docs"]

MAX_EXAMPLE_DEPTH = 2
"""Levels of lists and objects an example value builds before it settles for `[]` or `{}`."""
_NOTHING = object()
_FORMAT_EXAMPLES = {
    "date-time": "2025-01-31T12:00:00Z",
    "date": "2025-01-31",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uri-reference": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
}


def render_docs(server: str, tool: ToolSpec, tools: Sequence[ToolSpec] | None = None) -> str:
    """Title, whole description, every parameter with its details, return type, an example call.

    Parameters and the result have the types the stub gives them, and the fields inside them are
    listed below each, with the types the stub's classes give them. The stub is the tool's own
    (`servers/<server>/<tool>.pyi`), or, given `tools`, the one of those tools that `tool` is among
    (`servers/<server>.pyi` when they are the server's): class names can differ between the two,
    since a server's tools share its classes' names.
    """
    group = stub_order(tools) if tools is not None and tool in tools else [tool]
    return tool_docs(server, tool, stub_types(server, group))


def tool_docs(server: str, tool: ToolSpec, types: StubTypes) -> str:
    """`render_docs` with the types of the stub `tool` is in (`stub_types`), which may be kept for its other tools."""
    if types.defs.get(tool.identifier) is None:  # not among them: its own stub's
        types = stub_types(server, [tool])
    line = types.defs[tool.identifier]
    signature = _signature(line)
    root = tool.input_schema
    params = parameters(tool)
    title = f"{server}.{tool.identifier}"
    if tool.name != tool.identifier:
        title += f"  (upstream name {py_literal(tool.name)})"
    lines = [title]
    if description := tool.description.strip():
        lines += ["", description]
    lines += ["", "Parameters:" if params else "Parameters: none"]
    budget = Budget(MAX_FIELD_LINES, MAX_FIELD_CHARS)
    inputs = Fields(root, types.table, budget)
    annotations = {a.arg: a.annotation for a in signature.args.args} if signature else {}
    for param in params:
        lines += _param_lines(param, inputs, line, annotations.get(param.identifier))
    if tool.output_schema:
        out = tool.output_schema
        returns = signature.returns if signature else None
        shown = _segment(line, returns) or Renderer(out).expr(out)
        outputs = Fields(out, types.table, budget)
        lines += ["", f"Returns: {shown}", *outputs.fields(out, returns, "  ", 1, [], "")]
    lines += ["", "Example:", "  " + example_call(server, tool.identifier, params, root)]
    return "\n".join(lines) + "\n"


def _signature(line: str) -> ast.FunctionDef | None:
    try:
        func = ast.parse(line).body[0]
    except (SyntaxError, IndexError):  # pragma: no cover - stubs always parse
        return None
    return func if isinstance(func, ast.FunctionDef) else None


def _segment(source: str, node: ast.AST | None) -> str | None:
    return ast.get_source_segment(source, node) if node is not None else None


def _param_lines(param: Param, fields: Fields, line: str, annotation: ast.expr | None) -> list[str]:
    """A parameter as the stub shows it, then its nested fields.

    Same type and default as the stub's signature, so the two never disagree: an optional one
    without a default shows `= None` ("may be left out"), and its type gains `| None` only when
    the schema accepts null. Only long defaults differ: the stub cuts them to `...`.
    """
    shown = _segment(line, annotation) or Renderer(fields.root).expr(param.schema)
    head = f"  {param.identifier}: {shown}"
    if not param.required:
        head += f" = {short(py_literal(param.default if param.has_default else None))}"
    notes = [] if param.identifier == param.name else [f"property {py_literal(param.name)}"]
    text = annotate(head, param.schema, fields.root, param.required, notes)
    return [text, *fields.fields(param.schema, annotation, "    ", 1, [], "")]


def example_call(server: str, identifier: str, params: list[Param], root: Mapping[str, Any]) -> str:
    """`server.tool(a=..., b=...)` with plausible values for the required parameters."""
    args = [f"{p.identifier}={py_literal(_placeholder(p.name, p.schema, root, 0, []))}" for p in params if p.required]
    return f"{server}.{identifier}({', '.join(args)})"


def _placeholder(name: str, schema: Any, root: Mapping[str, Any], depth: int, refs: list[str]) -> Any:
    """A value a call could pass: the schema's own example, default or first allowed value if any.

    Unions are walked iteratively (first non-null option) so nesting them costs no recursion.
    """
    node, refs = effective(schema, root, refs)
    for _ in range(MAX_UNION_NESTING):
        if node is None:
            return {}
        given = _given_value(node)
        if given is not _NOTHING:
            return given
        members = node.get("anyOf", node.get("oneOf", node.get("allOf")))
        if not isinstance(members, list) or not members:
            break
        node, refs = effective(next((m for m in members if not is_null(m)), members[0]), root, refs)
    return _typed_placeholder(name, node or {}, root, depth, refs)


def _given_value(node: Mapping[str, Any]) -> Any:
    """The value the schema itself suggests (example, default, const, first enum value)."""
    if isinstance(node.get("examples"), list) and node["examples"]:
        return node["examples"][0]
    for key in ("example", "default", "const"):
        if key in node:
            return node[key]
    values = node.get("enum")
    if isinstance(values, list) and values:
        return next((v for v in values if v is not None), values[0])
    return _NOTHING


def _typed_placeholder(name: str, node: Mapping[str, Any], root: Mapping[str, Any], depth: int,
                       refs: list[str]) -> Any:  # fmt: skip
    declared = node.get("type")
    kinds = declared if isinstance(declared, list) else [declared]
    real = [k for k in kinds if k != "null"]
    if not real and "null" in kinds:
        return None
    kind = real[0] if real else None
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    if kind == "integer":
        low = node.get("minimum")
        return int(low) if is_number(low) else 1
    if kind == "number":
        low = node.get("minimum")
        return low if is_number(low) else 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        items = node.get("items")
        fits = isinstance(items, Mapping) and depth < MAX_EXAMPLE_DEPTH
        return [_placeholder(name, items, root, depth + 1, refs)] if fits else []
    if kind == "object":
        if depth >= MAX_EXAMPLE_DEPTH:
            return {}
        props = properties_of(node, root)
        # Required fields; with none, the first field shows what kind of object this is.
        keys = [k for k in required_of(node, root) if k in props] or list(props)[:1]
        return {k: _placeholder(k, props[k], root, depth + 1, refs) for k in keys}
    fmt = node.get("format")
    return _FORMAT_EXAMPLES.get(fmt, f"<{name}>") if isinstance(fmt, str) else f"<{name}>"
