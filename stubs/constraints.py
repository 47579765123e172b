"""Validation keywords as the docs show them: short phrases such as `>= 1`, `maxLength 100`, `format uuid`.

The type already says most of what a schema allows; these are the rest, for a parameter's or a
field's line in `getToolDocs`. Values too long to be worth showing whole are cut (`short`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .nodes import bound, is_number
from .schema import MAX_LITERALS, py_literal

__all__ = ["MAX_SHOWN", "constraints", "short"]

MAX_SHOWN = 200
"""Defaults and examples longer than this are cut: docs should explain, not dump data."""
_COUNTS = (("minLength", "minLength"), ("maxLength", "maxLength"), ("minItems", "minItems"),
           ("maxItems", "maxItems"), ("minProperties", "minProperties"), ("maxProperties", "maxProperties"),
           ("multipleOf", "multiple of"))  # fmt: skip


def constraints(node: Mapping[str, Any]) -> list[str]:
    """Validation keywords as short phrases: `>= 1`, `maxLength 100`, `format uuid`, values..."""
    found = _bounds(node)
    found += [f"{label} {py_literal(node[key])}" for key, label in _COUNTS if is_number(node.get(key))]
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
        found.append(f"example {short(py_literal(examples[0]))}")
    if node.get("deprecated") is True:
        found.append("deprecated")
    return found


def _bounds(node: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key, exclusive, inclusive_op, exclusive_op in (("minimum", "exclusiveMinimum", ">=", ">"),
                                                       ("maximum", "exclusiveMaximum", "<=", "<")):  # fmt: skip
        if (side := bound(node, key, exclusive)) is not None:
            found.append(f"{exclusive_op if side[1] else inclusive_op} {py_literal(side[0])}")
    return found


def _values(label: str, values: Any) -> list[str]:
    """Enum values the type could not show (too many for a Literal, or not literal-able)."""
    if not isinstance(values, list) or not values:
        return []
    if len(values) <= MAX_LITERALS and all(v is None or isinstance(v, str | int | float) for v in values):
        return []
    return [f"{label} " + short(", ".join(py_literal(v) for v in values), 1000)]


def short(text: str, limit: int = MAX_SHOWN) -> str:
    """`text`, cut to `limit` characters with a trailing `…` when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
