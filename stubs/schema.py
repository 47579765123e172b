"""JSON Schema to compact Python type expressions, plus the literal and null helpers around them.

Stubs are read by a model on every task, so types aim at being short and telling rather than
exact: long enums and unions fall back to their base type or `Any`. Here objects with properties
are just `dict` (their fields are in the tool docs); `stubs.typed` subclasses `Renderer` to name
them as TypedDicts instead. Every expression is valid Python, because stubs must parse.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .refs import MAX_DEPTH, SEEN, follow, ref_name

__all__ = [
    "MAX_LITERALS",
    "MAX_UNION",
    "Renderer",
    "accepts_null",
    "py_literal",
    "singular",
    "type_expr",
]

MAX_LITERALS = 10
"""More enum values than this render as their base type; the docs still list every value."""
MAX_UNION = 4
"""A union with more members than this says nothing useful, so it renders as `Any`."""

_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
# JSON leaves these unescaped, but they are invisible, break lines for str.splitlines, or (lone
# surrogates, legal in JSON text) cannot be encoded as UTF-8.
_UNSAFE_CHARS = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def type_expr(schema: Mapping[str, Any] | bool, root: Mapping[str, Any]) -> str:
    """The Python type of values matching `schema`; `root` is the document `$ref`s point into."""
    return Renderer(root).expr(schema)


def py_literal(value: Any) -> str:
    """`value` (parsed JSON) as Python literal source; strings always in double quotes."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f'float("{value}")'
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return _UNSAFE_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{py_literal(str(k))}: {py_literal(v)}" for k, v in value.items()) + "}"
    return "None"


def singular(word: str) -> str:
    """A rough singular for naming an array's item (`lines` -> `line`, `entries` -> `entry`)."""
    if word.endswith(("series", "species", "status")):
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def accepts_null(schema: Mapping[str, Any] | bool, root: Mapping[str, Any]) -> bool:
    """Whether `null` may be a valid value of `schema`, following `$ref`s into `root`.

    The gateway drops a script's `None` for an optional parameter that cannot take null (the
    stub shows it as `x: T = None`, "may be left out"), so this must follow the same `$ref` and
    `allOf` structure the stubs do. Shapes it cannot tell (unknown refs, cycles, `{}`) count as
    accepting null: then the value is sent and the upstream decides.
    """
    return _accepts_null(schema, root, {}, 0)


def _accepts_null(schema: Any, root: Mapping[str, Any], refs: dict[str, bool], depth: int) -> bool:
    """Every keyword that constrains the value must allow null (`nullable: true` always does).

    Beyond `MAX_DEPTH` the schema cannot be told, so it counts as accepting null.
    """
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return schema is not False
    if schema.get("nullable") is True:
        return True
    kind = schema.get("type")
    if (isinstance(kind, str) and kind != "null") or (isinstance(kind, list) and "null" not in kind):
        return False
    if "const" in schema and schema["const"] is not None:
        return False
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        return False
    ref = schema.get("$ref")
    if isinstance(ref, str) and not _ref_accepts_null(ref, root, refs, depth):
        return False
    return _members_accept_null(schema, root, refs, depth)


def _ref_accepts_null(ref: str, root: Mapping[str, Any], refs: dict[str, bool], depth: int) -> bool:
    """Each ref is judged once per parameter (`refs` is the walk's seen-set, with the verdicts), so
    shared definitions cost no exponential walk.

    It runs for every tool when the catalog is built, on untrusted schemas. A ref met again
    while it is being judged (a cycle) counts as accepting null, like any shape it cannot tell.
    """
    target = follow(ref, root, refs)
    if target is not SEEN:
        refs[ref] = True
        refs[ref] = target is None or _accepts_null(target, root, refs, depth + 1)
    return refs[ref]


def _members_accept_null(schema: Mapping[str, Any], root: Mapping[str, Any], refs: dict[str, bool],
                         depth: int) -> bool:  # fmt: skip
    """anyOf/oneOf: some member allows null; allOf: every member does."""
    for key in ("anyOf", "oneOf"):
        members = schema.get(key)
        if isinstance(members, list) and members and not any(_accepts_null(m, root, refs, depth + 1) for m in members):
            return False
    members = schema.get("allOf")
    return not isinstance(members, list) or all(_accepts_null(m, root, refs, depth + 1) for m in members)


class _Union:
    """Members of a union being built: plain types, literal values, and whether None is allowed."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.literals: list[Any] = []
        self.none = False

    def add(self, member: str) -> None:
        if member == "None":
            self.none = True
        elif member not in self.types:
            self.types.append(member)

    def add_literal(self, value: Any) -> None:
        if value is None:
            self.none = True
        elif not any(value == v and type(value) is type(v) for v in self.literals):
            self.literals.append(value)

    def merge(self, other: _Union) -> None:
        for t in other.types:
            self.add(t)
        for v in other.literals:
            self.add_literal(v)
        self.none = self.none or other.none

    def is_any(self) -> bool:
        return "Any" in self.types or not (self.types or self.literals or self.none)

    def render(self) -> str:
        members = list(self.types)
        if len(self.literals) > MAX_LITERALS:
            for v in self.literals:
                base = _base_type(v)
                if base not in members:
                    members.append(base)
        elif self.literals:
            members.insert(0, "Literal[" + ", ".join(py_literal(v) for v in self.literals) + "]")
        if self.none:
            members.append("None")
        if "Any" in members or not members or len(members) > MAX_UNION:
            return "Any"
        return " | ".join(members)


def _base_type(value: Any) -> str:
    for py_type, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list")):
        if isinstance(value, py_type):
            return name
    return "dict"


def _is_literal_value(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


class Renderer:
    """Renders the schemas of one document (a tool's inputSchema or outputSchema).

    It carries what a single expression cannot: the root for `$ref`s, the stack of refs being
    expanded (its seen-set, see `stubs.refs`: a ref met again while expanding itself is
    recursive, `recursive` names it, `dict` here), and `hint`, a name for the value being
    rendered (a property, an array's item, a `$defs` entry) that subclasses use to name the
    object types they collect (`stubs.typed`).
    """

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.hint = ""
        self._refs: list[str] = []

    def expr(self, schema: Mapping[str, Any] | bool, *, hint: str = "", optional: bool = False) -> str:
        """The type expression of `schema`, naming what it renders after `hint`.

        `optional` says a call may leave the value out; it is unused here and accepted so that
        callers need not know which renderer they have (`stubs.typed` keeps such objects `dict`).
        """
        saved, self.hint = self.hint, hint
        try:
            return self._union(schema, 0).render()
        finally:
            self.hint = saved

    def recursive(self, ref: str) -> str:
        """The type of a `$ref` met again while it is being expanded."""
        return "dict"

    def object_type(self, schema: Mapping[str, Any], depth: int) -> str:
        """The type of an object schema: `dict[str, T]` for pure maps, else plain `dict`."""
        extra = schema.get("additionalProperties")
        if not schema.get("properties") and isinstance(extra, Mapping) and extra:
            value = self._union(extra, depth + 1).render()
            if value != "Any":
                return f"dict[str, {value}]"
        return "dict"

    def _union(self, schema: Any, depth: int) -> _Union:
        union = _Union()
        if depth > MAX_DEPTH or not isinstance(schema, Mapping):
            union.add("Any")
        elif "$ref" in schema:
            union.merge(self._ref(schema["$ref"], depth))
        elif "const" in schema:
            self._enum(union, [schema["const"]])
        elif isinstance(schema.get("enum"), list) and schema["enum"]:
            self._enum(union, schema["enum"])
        else:
            union.merge(self._composite(schema, depth))
        if isinstance(schema, Mapping) and schema.get("nullable") is True:
            union.none = True
        return union

    def _ref(self, ref: Any, depth: int) -> _Union:
        union = _Union()
        target = follow(ref, self.root, self._refs) if isinstance(ref, str) else None
        if target is None:
            union.add("Any")
        elif target is SEEN:
            union.add(self.recursive(ref))
        else:
            self._refs.append(ref)
            saved = self.hint
            self.hint = ref_name(ref) or saved
            try:
                union.merge(self._union(target, depth + 1))
            finally:
                self._refs.pop()
                self.hint = saved
        return union

    def _enum(self, union: _Union, values: list[Any]) -> None:
        for value in values:
            if _is_literal_value(value):
                union.add_literal(value)
            else:
                union.add(_base_type(value))

    def _composite(self, schema: Mapping[str, Any], depth: int) -> _Union:
        """anyOf/oneOf/allOf when they say something, else the schema's own `type`."""
        for key in ("anyOf", "oneOf"):
            members = schema.get(key)
            if isinstance(members, list) and members:
                union = _Union()
                for member in members:
                    union.merge(self._union(member, depth + 1))
                if not union.is_any():
                    return union
        members = schema.get("allOf")
        if isinstance(members, list) and members:
            union = self._all_of(members, depth)
            if not union.is_any():
                return union
        return self._typed(schema, depth)

    def _all_of(self, members: list[Any], depth: int) -> _Union:
        """One informative member gives its type; several different ones intersect to an object."""
        rendered = {self._union(m, depth + 1).render() for m in members} - {"Any"}
        union = _Union()
        union.add(rendered.pop() if len(rendered) == 1 else "dict")
        return union

    def _typed(self, schema: Mapping[str, Any], depth: int) -> _Union:
        union = _Union()
        declared = schema.get("type")
        names = declared if isinstance(declared, list) else [declared]
        for name in names:
            union.add(self._single(name, schema, depth))
        return union

    def _single(self, name: Any, schema: Mapping[str, Any], depth: int) -> str:
        if name is None:
            name = "object" if "properties" in schema else "array" if "items" in schema else None
        if name == "array":
            items = schema.get("items")
            saved = self.hint
            self.hint = singular(saved)
            try:
                inner = self._union(items, depth + 1).render() if isinstance(items, Mapping | bool) else "Any"
            finally:
                self.hint = saved
            return "list" if inner == "Any" else f"list[{inner}]"
        if name == "object":
            return self.object_type(schema, depth)
        return _SIMPLE.get(name, "Any") if isinstance(name, str) else "Any"
