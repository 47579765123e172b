"""One schema node as the docs and the stub's notes read it: `$ref`s followed, `X | None` unwrapped.

Both `docs` (every field with its details) and `render` (the constraints in a stub's comment)
look at what a property's schema says once its `$ref`s and nullable wrapper are out of the way,
and at its numeric bounds, which JSON Schema drafts spell two ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from .refs import MAX_DEPTH, SEEN, follow

__all__ = ["bound", "effective", "is_null", "is_number"]


def effective(schema: Any, root: Mapping[str, Any], refs: list[str]) -> tuple[Mapping[str, Any] | None, list[str]]:
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
        single = single_option(node)
        if single is None:
            return node, seen
        node = {**single, **_without(node, "anyOf", "oneOf")}
    return {}, seen


def _without(node: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in keys}


def single_option(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The one non-null member of an anyOf/oneOf (as in `Model | None`), if that is its shape."""
    members = node.get("anyOf", node.get("oneOf"))
    if not isinstance(members, list):
        return None
    real = [m for m in members if not is_null(m)]
    return real[0] if len(real) == 1 and isinstance(real[0], Mapping) else None


def is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and (schema.get("type") == "null" or schema.get("enum") == [None])


def bound(node: Mapping[str, Any], key: str, exclusive: str) -> tuple[float, bool] | None:
    """(value, is_exclusive) for one side of a numeric range, in both JSON Schema drafts' spellings.

    Draft 6+ gives the exclusive bound as a number (`exclusiveMinimum: 0`); draft 4 as a flag on
    the inclusive one (`minimum: 0, exclusiveMinimum: true`). The stub's notes read it here too.
    """
    flag = node.get(exclusive)
    if is_number(flag):
        return flag, True
    value = node.get(key)
    if is_number(value):
        return value, flag is True
    return None


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
