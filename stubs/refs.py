"""`$ref`s in tool schemas: resolving them, and the one rule that bounds every walk over them.

Upstream schemas are untrusted: a definition may refer to itself (`Node` with `children: Node[]`),
be shared many times over, or nest without end, and the catalog walks them for every tool. So
every walk in `stubs` that follows `$ref` (the type renderers, the docs, `accepts_null`, the
parameter list) stops the same two ways:

- it keeps the refs it has followed in a seen-set, and `follow` never follows one of them again;
- it goes at most `MAX_DEPTH` steps deep (a `$ref` followed, a member, item or field entered).

A walk that shows every use of a definition (a type expression, the docs' fields) keeps only the
refs on its current path, so a ref met again there is a cycle. A walk that collects (`parts`,
`accepts_null`) keeps every ref it followed, so that a shared definition costs one visit.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from enum import Enum
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["MAX_DEPTH", "SEEN", "follow", "parts", "ref_name", "resolve_ref"]

MAX_DEPTH = 32
"""Steps a walk takes into a schema; deeper parts are not looked at (the renderers say `Any`)."""


class _Seen(Enum):
    SEEN = "seen"


SEEN: Final = _Seen.SEEN
"""What `follow` returns for a ref the walk has followed already."""


def resolve_ref(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any] | bool | None:
    """The schema a local `$ref` (`#`, `#/$defs/X`, any JSON pointer) names, or None if unknown."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for key in _tokens(ref):
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node if isinstance(node, Mapping | bool) else None


def ref_name(ref: str) -> str:
    """The last token of a local `$ref` pointer (`#/$defs/Order` -> `Order`), "" for `#`."""
    if not ref.startswith("#"):
        return ""
    pointer = unquote(ref[1:])
    return _unescape(pointer.rsplit("/", 1)[-1])


def _tokens(ref: str) -> list[str]:
    pointer = unquote(ref[1:])
    return [_unescape(token) for token in pointer.split("/")[1:]] if pointer else []


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def follow(ref: str, root: Mapping[str, Any], seen: Container[str]) -> Mapping[str, Any] | bool | _Seen | None:
    """Where `ref` leads in a walk that has followed `seen`: `SEEN` if among them, else its target
    (None if it names nothing). The caller adds `ref` to `seen` while it walks the target."""
    return SEEN if ref in seen else resolve_ref(ref, root)


def parts(schema: Any, root: Mapping[str, Any], *, breadth_first: bool = False) -> list[Mapping[str, Any]]:
    """The schemas `schema` is made of: itself, what its `$ref` names, its `allOf` members, and so on.

    By default depth first, with what a part's `$ref` names before the part and its `allOf`
    members after it: the order `properties_of` merges in (first one wins). `breadth_first`
    lists them level by level instead, each part before what it refers to (`required_of`).
    Each ref is followed once per walk, and parts more than `MAX_DEPTH` steps in are left out.
    """
    found: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    if not breadth_first:
        _depth_first(schema, root, seen, found, 0)
        return found
    level: list[Any] = [schema]
    for _ in range(MAX_DEPTH):
        nodes = [node for node in level if isinstance(node, Mapping)]
        found += nodes
        level = [inner for node in nodes for inner in _named(node, root, seen) + _members(node)]
    return found + [node for node in level if isinstance(node, Mapping)]


def _depth_first(node: Any, root: Mapping[str, Any], seen: set[str], found: list[Mapping[str, Any]],
                 depth: int) -> None:  # fmt: skip
    if not isinstance(node, Mapping):
        return
    inner = depth < MAX_DEPTH  # refs are seen only once their target is walked
    for target in _named(node, root, seen) if inner else []:
        _depth_first(target, root, seen, found, depth + 1)
    found.append(node)
    for member in _members(node) if inner else []:
        _depth_first(member, root, seen, found, depth + 1)


def _named(node: Mapping[str, Any], root: Mapping[str, Any], seen: set[str]) -> list[Any]:
    """What the node's `$ref` names, as a list of none or one schema; the ref is then seen."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return []
    target = follow(ref, root, seen)
    if target is SEEN:
        return []
    seen.add(ref)
    return [target]


def _members(node: Mapping[str, Any]) -> list[Any]:
    members = node.get("allOf")
    return members if isinstance(members, list) else []
