"""Full documentation of one tool, for `getToolDocs`.

The stub only has room for a signature and a summary; when a call needs more (what a nested
object looks like, allowed values, ranges, formats), the model asks for the docs. They are read
once per tool, so they may be complete, but they stay plain text with one line per field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from .refs import MAX_DEPTH, SEEN, follow
from .schema import MAX_LITERALS, Renderer, py_literal
from .tool import Param, ToolSpec, parameters, properties_of, required_of
from .typed import TypedRenderer, TypeTable, result_hint

__all__ = ["constraints", "example_call", "render_docs"]

MAX_NESTED = 2
"""Levels of nested fields listed below a parameter (and below the return type)."""
MAX_WIDTH = 24
"""Every nested step (field, option, array item) widens indent or prefix, so this bounds the walk."""
MAX_EXAMPLE_DEPTH = 2
"""Levels of lists and objects an example value builds before it settles for `[]` or `{}`."""
MAX_UNION_NESTING = 8
"""Unions inside unions are flattened up to this depth; deeper (or adversarial) nesting is ignored."""
MAX_SHOWN = 200
"""Defaults and examples longer than this are cut: docs should explain, not dump data."""

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
_COUNTS = (("minLength", "minLength"), ("maxLength", "maxLength"), ("minItems", "minItems"),
           ("maxItems", "maxItems"), ("minProperties", "minProperties"), ("maxProperties", "maxProperties"),
           ("multipleOf", "multiple of"))  # fmt: skip


def render_docs(server: str, tool: ToolSpec) -> str:
    """Title, whole description, every parameter with its details, return type, an example call.

    Parameters and the result have the types the tool's stub gives them (its class names); the
    fields inside them are listed below each, with their own types.
    """
    root = tool.input_schema
    params = parameters(tool)
    title = f"{server}.{tool.identifier}"
    if tool.name != tool.identifier:
        title += f"  (upstream name {py_literal(tool.name)})"
    lines = [title]
    if description := tool.description.strip():
        lines += ["", description]
    lines += ["", "Parameters:" if params else "Parameters: none"]
    table = TypeTable([tool.identifier])  # class names as the tool's stub gives them, in the same order
    inputs = TypedRenderer(root, table)
    for param in params:
        lines += _param_lines(param, root, inputs)
    if tool.output_schema:
        out = tool.output_schema
        returns = TypedRenderer(out, table, inputs=False).expr(out, hint=result_hint(tool.identifier, server))
        lines += ["", f"Returns: {returns}", *_fields(out, out, "  ", 1, [], "")]
    lines += ["", "Example:", "  " + example_call(server, tool.identifier, params, root)]
    return "\n".join(lines) + "\n"


def _param_lines(param: Param, root: Mapping[str, Any], renderer: Renderer) -> list[str]:
    """A parameter as the stub shows it, then its nested fields.

    Same type and default as the stub's signature, so the two never disagree: an optional one
    without a default shows `= None` ("may be left out"), and its type gains `| None` only when
    the schema accepts null. Only long defaults differ: the stub cuts them to `...`.
    """
    head = f"  {param.identifier}: {renderer.expr(param.schema, hint=param.name, optional=not param.required)}"
    if not param.required:
        head += f" = {_short(py_literal(param.default if param.has_default else None))}"
    notes = [] if param.identifier == param.name else [f"property {py_literal(param.name)}"]
    line = _annotate(head, param.schema, root, param.required, notes)
    return [line, *_fields(param.schema, root, "    ", 1, [], "")]


def _annotate(head: str, schema: Any, root: Mapping[str, Any], required: bool, notes: list[str]) -> str:
    node = _effective(schema, root, [])[0] or {}
    parts = ["required" if required else "optional", *notes]
    if found := constraints(node):
        parts.append(", ".join(found))
    line = f"{head} ({'; '.join(parts)})"
    description = node.get("description")
    if isinstance(description, str) and description.strip():
        line += " - " + " ".join(description.split())
    return line


def _fields(schema: Any, root: Mapping[str, Any], indent: str, depth: int, refs: list[str], prefix: str) -> list[str]:
    """Lines for the fields inside an object (or each array item, or each union option)."""
    node, refs = _effective(schema, root, refs)
    if node is None or depth > MAX_NESTED or len(indent) + len(prefix) > MAX_WIDTH:
        return []
    props = properties_of(node, root)
    if props:
        required = required_of(node, root)
        lines: list[str] = []
        for name, sub in props.items():
            head = f"{indent}{prefix}{name}: {Renderer(root).expr(sub)}"
            sub_node = _effective(sub, root, refs)[0] or {}
            if "default" in sub_node:
                head += f" = {_short(py_literal(sub_node['default']))}"
            lines.append(_annotate(head, sub, root, name in required, []))
            lines += _fields(sub, root, indent + "  ", depth + 1, refs, "")
        return lines
    items = node.get("items")
    if isinstance(items, Mapping):
        return _fields(items, root, indent, depth, refs, prefix + "[].")
    return _options(node, root, indent, depth, refs, prefix)


def _options(node: Mapping[str, Any], root: Mapping[str, Any], indent: str, depth: int, refs: list[str],
             prefix: str) -> list[str]:  # fmt: skip
    """Each object alternative of an anyOf/oneOf (nested unions flattened), numbered, with its fields."""
    lines: list[str] = []
    number = 0
    for option, option_refs in _alternatives(node, root, refs, 0):
        inner = _fields(option, root, indent + "  ", depth, option_refs, "")
        if inner:
            number += 1
            label = f"{prefix[:-1]} option {number}" if prefix else f"option {number}"
            lines += [f"{indent}{label}:", *inner]
    return lines


def _alternatives(node: Mapping[str, Any], root: Mapping[str, Any], refs: list[str],
                  depth: int) -> list[tuple[Any, list[str]]]:  # fmt: skip
    members = node.get("anyOf", node.get("oneOf"))
    found: list[tuple[Any, list[str]]] = []
    for member in members if isinstance(members, list) and depth < MAX_UNION_NESTING else []:
        option, option_refs = _effective(member, root, refs)
        if option is None:
            continue
        if isinstance(option.get("anyOf", option.get("oneOf")), list):
            found += _alternatives(option, root, option_refs, depth + 1)
        else:
            found.append((option, option_refs))
    return found


def _effective(schema: Any, root: Mapping[str, Any], refs: list[str]) -> tuple[Mapping[str, Any] | None, list[str]]:
    """`schema` with `$ref`s followed and `X | None` unions unwrapped; None on a ref cycle.

    `refs` are the refs on the path down to `schema` (the walk's seen-set, see `stubs.refs`); the
    list returned adds those followed here. Each step counts against `MAX_DEPTH`. Keywords next
    to a `$ref` or around a nullable union (usually the description) win over the target's,
    since they describe this use of the shared definition.
    """
    seen = list(refs)
    node: Any = schema
    for _ in range(MAX_DEPTH + 1):
        if not isinstance(node, Mapping):
            return {}, seen
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = follow(ref, root, seen)
            if target is SEEN:
                return None, seen
            seen.append(ref)
            node = {**(target if isinstance(target, Mapping) else {}), **_without(node, "$ref")}
            continue
        single = _single_option(node)
        if single is None:
            return node, seen
        node = {**single, **_without(node, "anyOf", "oneOf")}
    return {}, seen


def _without(node: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in keys}


def _single_option(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The one non-null member of an anyOf/oneOf (as in `Model | None`), if that is its shape."""
    members = node.get("anyOf", node.get("oneOf"))
    if not isinstance(members, list):
        return None
    real = [m for m in members if not _is_null(m)]
    return real[0] if len(real) == 1 and isinstance(real[0], Mapping) else None


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and (schema.get("type") == "null" or schema.get("enum") == [None])


def constraints(node: Mapping[str, Any]) -> list[str]:
    """Validation keywords as short phrases: `>= 1`, `maxLength 100`, `format uuid`, values..."""
    found = _bounds(node)
    found += [f"{label} {py_literal(node[key])}" for key, label in _COUNTS if _is_number(node.get(key))]
    if isinstance(node.get("pattern"), str):
        found.append(f"pattern `{node['pattern']}`")
    if isinstance(node.get("format"), str):
        found.append(f"format {node['format']}")
    if node.get("uniqueItems") is True:
        found.append("unique items")
    found += _values("values", node.get("enum"))
    items = node.get("items")
    if isinstance(items, Mapping):
        found += _values("item values", items.get("enum"))
    examples = node.get("examples")
    if isinstance(examples, list) and examples:
        found.append(f"example {_short(py_literal(examples[0]))}")
    if node.get("deprecated") is True:
        found.append("deprecated")
    return found


def _bounds(node: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key, exclusive, inclusive_op, exclusive_op in (("minimum", "exclusiveMinimum", ">=", ">"),
                                                       ("maximum", "exclusiveMaximum", "<=", "<")):  # fmt: skip
        if (side := _bound(node, key, exclusive)) is not None:
            found.append(f"{exclusive_op if side[1] else inclusive_op} {py_literal(side[0])}")
    return found


def _bound(node: Mapping[str, Any], key: str, exclusive: str) -> tuple[float, bool] | None:
    """(value, is_exclusive) for one side of a numeric range, in both JSON Schema drafts' spellings.

    Draft 6+ gives the exclusive bound as a number (`exclusiveMinimum: 0`); draft 4 as a flag on
    the inclusive one (`minimum: 0, exclusiveMinimum: true`). The stub's notes read it here too.
    """
    flag = node.get(exclusive)
    if _is_number(flag):
        return flag, True
    value = node.get(key)
    if _is_number(value):
        return value, flag is True
    return None


def _values(label: str, values: Any) -> list[str]:
    """Enum values the type could not show (too many for a Literal, or not literal-able)."""
    if not isinstance(values, list) or not values:
        return []
    if len(values) <= MAX_LITERALS and all(v is None or isinstance(v, str | int | float) for v in values):
        return []
    return [f"{label} " + _short(", ".join(py_literal(v) for v in values), 1000)]


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def example_call(server: str, identifier: str, params: list[Param], root: Mapping[str, Any]) -> str:
    """`server.tool(a=..., b=...)` with plausible values for the required parameters."""
    args = [f"{p.identifier}={py_literal(_placeholder(p.name, p.schema, root, 0, []))}" for p in params if p.required]
    return f"{server}.{identifier}({', '.join(args)})"


def _placeholder(name: str, schema: Any, root: Mapping[str, Any], depth: int, refs: list[str]) -> Any:
    """A value a call could pass: the schema's own example, default or first allowed value if any.

    Unions are walked iteratively (first non-null option) so nesting them costs no recursion.
    """
    node, refs = _effective(schema, root, refs)
    for _ in range(MAX_UNION_NESTING):
        if node is None:
            return {}
        given = _given_value(node)
        if given is not _NOTHING:
            return given
        members = node.get("anyOf", node.get("oneOf", node.get("allOf")))
        if not isinstance(members, list) or not members:
            break
        node, refs = _effective(next((m for m in members if not _is_null(m)), members[0]), root, refs)
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
        return int(low) if _is_number(low) else 1
    if kind == "number":
        low = node.get("minimum")
        return low if _is_number(low) else 1.0
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
