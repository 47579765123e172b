"""The fields inside a parameter's or the result's value, as `getToolDocs` lists them.

Every type is the stub's own: a field's is read from the line of the class it is in, so the docs
name the same classes the stub does (`lines: list[Line]`) and list each one's fields below it.
Upstream schemas are untrusted, so the listing is bounded: `MAX_NESTED` levels, `MAX_WIDTH` of
indent, at most `MAX_FIELD_LINES` nested fields in `MAX_FIELD_CHARS` characters per tool (the rest
are counted, not shown; `Budget`), and `MAX_FIELD_DESCRIPTION` characters of each one's description.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from .constraints import constraints, short
from .nodes import effective
from .schema import Renderer, py_literal
from .tool import properties_of, required_of
from .typed import TypeTable

__all__ = [
    "MAX_FIELD_CHARS",
    "MAX_FIELD_DESCRIPTION",
    "MAX_FIELD_LINES",
    "MAX_NESTED",
    "MAX_UNION_NESTING",
    "MAX_WIDTH",
    "Budget",
    "Fields",
    "annotate",
]

MAX_NESTED = 2
"""Levels of nested fields listed below a parameter (and below the return type). The stub's
classes are at most `stubs.typed.MAX_NEST` deep, so each one's fields are within them."""
MAX_WIDTH = 24
"""Every nested step (field, option, array item) widens indent or prefix, so this bounds the walk."""
MAX_FIELD_LINES = 300
"""Nested fields one tool's docs list, parameters and result together; the parameters themselves are
always listed. A shared definition is listed wherever it is used, so this is what bounds a hostile
schema that uses one many times over (the recorded real tools list at most about 100)."""
MAX_FIELD_CHARS = 60_000
"""Characters those lines may take together (the recorded real tools' whole docs take at most 10,000)."""
MAX_FIELD_DESCRIPTION = 1000
"""Characters of a nested field's description; a parameter's is given whole."""
MAX_UNION_NESTING = 8
"""Unions inside unions are flattened up to this depth; deeper (or adversarial) nesting is ignored."""


def annotate(head: str, schema: Any, root: Mapping[str, Any], required: bool, notes: list[str],
             limit: int | None = None) -> str:  # fmt: skip
    """`head` (a parameter's or field's name and type) with what else the schema says about it:
    required or optional, `notes`, `constraints`, then its description (cut to `limit` if given)."""
    node = effective(schema, root, [])[0] or {}
    parts = ["required" if required else "optional", *notes]
    if found := constraints(node):
        parts.append(", ".join(found))
    line = f"{head} ({'; '.join(parts)})"
    description = node.get("description")
    if isinstance(description, str) and description.strip():
        text = " ".join(description.split())
        line += " - " + (text if limit is None else short(text, limit))
    return line


class Budget:
    """Nested field lines one tool's docs may still list, and the characters they may still take."""

    def __init__(self, lines: int, chars: int) -> None:
        self.lines = lines
        self.chars = chars

    def take(self, line: str) -> bool:
        """Whether `line` fits, counting it if so; once one does not, none do."""
        if self.lines <= 0 or len(line) > self.chars:
            self.lines = 0
            return False
        self.lines -= 1
        self.chars -= len(line)
        return True

    @property
    def spent(self) -> bool:
        return self.lines <= 0


class Fields:
    """The fields inside the values of one schema document, typed as the stub's classes type them.

    A walk carries the type the stub gives the value it is in (a parsed annotation, or None where
    the stub says `dict` and has no class): an object the stub declared as a class lists that
    class's fields with their types; one it left `dict` lists its fields with plain types
    (`Renderer`), which then name no class either, as the stub has none for them.
    """

    def __init__(self, root: Mapping[str, Any], table: TypeTable, budget: Budget) -> None:
        self.root = root
        self.table = table
        self.budget = budget
        self._parsed: dict[str, ast.expr | None] = {}

    def fields(self, schema: Any, typed: ast.expr | None, indent: str, depth: int, refs: list[str],
               prefix: str) -> list[str]:  # fmt: skip
        """Lines for the fields inside an object (or each array item, map value or union option)."""
        node, refs = effective(schema, self.root, refs)
        if node is None or depth > MAX_NESTED or len(indent) + len(prefix) > MAX_WIDTH:
            return []
        props = properties_of(node, self.root)
        if props:
            found = self._class(_members(typed), list(props), 0)
            return self._object(node, props, found[0] if found else None, indent, depth, refs, prefix)
        items = node.get("items")
        if isinstance(items, Mapping):
            return self.fields(items, _argument(typed, "list", 0), indent, depth, refs, prefix + "[].")
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            return self.fields(extra, _argument(typed, "dict", 1), indent, depth, refs, prefix + "[key].")
        return self._options(node, typed, indent, depth, refs, prefix)

    def _object(self, node: Mapping[str, Any], props: Mapping[str, Any], cls: str | None, indent: str, depth: int,
                refs: list[str], prefix: str) -> list[str]:  # fmt: skip
        required = required_of(node, self.root)
        types = {key: expr for key, expr, _ in self.table.fields(cls) or ()} if cls else {}
        lines: list[str] = []
        for i, (name, sub) in enumerate(props.items()):
            line = self._field(name, sub, types.get(name), name in required, refs, indent + prefix)
            if not self.budget.take(line):
                more = len(props) - i
                lines.append(f"{indent}{prefix}… {more} {'more ' if i else ''}field{'s' if more > 1 else ''} not shown")
                break
            lines.append(line)
            typed = self._parse(types[name]) if name in types else None
            lines += self.fields(sub, typed, indent + "  ", depth + 1, refs, "")
        return lines

    def _field(self, name: str, schema: Any, shown: str | None, required: bool, refs: list[str], start: str) -> str:
        """One field's line: `start`, name, type (the class's, else a plain one), default, notes, description."""
        if self.budget.spent:  # its line would not be shown
            return ""
        head = f"{start}{name}: {shown or Renderer(self.root).expr(schema)}"
        node = effective(schema, self.root, refs)[0] or {}
        if "default" in node:
            head += f" = {short(py_literal(node['default']))}"
        return annotate(head, schema, self.root, required, [], MAX_FIELD_DESCRIPTION)

    def _options(self, node: Mapping[str, Any], typed: ast.expr | None, indent: str, depth: int, refs: list[str],
                 prefix: str) -> list[str]:  # fmt: skip
        """Each object alternative of an anyOf/oneOf (nested unions flattened), numbered, with its fields.

        The stub's union lists the classes of the alternatives in the same order (an alternative
        identical to an earlier one shares its class), so each takes the next class with its keys.
        """
        members = _members(typed)
        lines: list[str] = []
        number = cursor = 0
        for option, option_refs in _alternatives(node, self.root, refs, 0):
            if self.budget.spent:
                lines.append(f"{indent}… more options not shown")
                break
            option_type, cls = typed, None  # an array or a map finds its own member of the union
            if props := properties_of(option, self.root):
                found = self._class(members, list(props), cursor) or self._class(members, list(props), 0)
                cls, cursor = (found[0], found[1] + 1) if found else (None, cursor)
                option_type = ast.Name(cls) if cls else None
            inner = self.fields(option, option_type, indent + "  ", depth, option_refs, "")
            if inner:
                number += 1
                label = f"{prefix[:-1]} option {number}" if prefix else f"option {number}"
                lines += [f"{indent}{label}{f' ({cls})' if cls else ''}:", *inner]
        return lines

    def _class(self, members: list[ast.expr], keys: list[str], start: int) -> tuple[str, int] | None:
        """The first class among `members[start:]` with exactly these keys, and its index."""
        for i, member in enumerate(members[start:], start):
            if isinstance(member, ast.Name):
                found = self.table.fields(member.id)
                if found is not None and [key for key, _, _ in found] == keys:
                    return member.id, i
        return None

    def _parse(self, expr: str) -> ast.expr | None:
        if expr not in self._parsed:
            try:
                self._parsed[expr] = ast.parse(expr, mode="eval").body
            except SyntaxError:  # pragma: no cover - the stub's types always parse
                self._parsed[expr] = None
        return self._parsed[expr]


def _members(typed: ast.expr | None) -> list[ast.expr]:
    """The members of a union type (`A | B | None` -> A, B, None); a single type is its only member."""
    found: list[ast.expr] = []
    stack = [typed] if typed is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            stack += [node.right, node.left]
        else:
            found.append(node)
    return found


def _argument(typed: ast.expr | None, generic: str, index: int) -> ast.expr | None:
    """The `index`th arguments of the union's `list[...]` (or `dict[..., ...]`) members, as one union:
    `list[Line] | None` -> `Line`; `list[str] | list[Line]` -> `str | Line`, where each item finds its own."""
    found: list[ast.expr] = []
    for member in _members(typed):
        if isinstance(member, ast.Subscript) and isinstance(member.value, ast.Name) and member.value.id == generic:
            args = member.slice.elts if isinstance(member.slice, ast.Tuple) else [member.slice]
            found += args[index : index + 1]
    if not found:
        return None
    union = found[0]
    for arg in found[1:]:
        union = ast.BinOp(union, ast.BitOr(), arg)
    return union


def _alternatives(node: Mapping[str, Any], root: Mapping[str, Any], refs: list[str],
                  depth: int) -> list[tuple[Any, list[str]]]:  # fmt: skip
    members = node.get("anyOf", node.get("oneOf"))
    found: list[tuple[Any, list[str]]] = []
    for member in members if isinstance(members, list) and depth < MAX_UNION_NESTING else []:
        option, option_refs = effective(member, root, refs)
        if option is None:
            continue
        if isinstance(option.get("anyOf", option.get("oneOf")), list):
            found += _alternatives(option, root, option_refs, depth + 1)
        else:
            found.append((option, option_refs))
    return found
