"""Objects in stubs as named TypedDicts, declared once per stub file.

`TypedRenderer` renders like `Renderer`, except that an object with properties becomes a class
in a `TypeTable` and the expression is its name: `def get_order(id: str) -> Order: ...` with
`class Order(TypedDict): id: str; lines: list[Line]` above it. Each class is one line, so a
stub stays one line per declaration. Identical classes are declared once (so tools sharing a
shape share a name), and a `$ref` that refers to itself names its own class. A result's class is
named by its output schema's own `title` where it has one (`Product`), else after the tool.
The table keeps each class's fields, so that the docs can type and list them as the stub does.

Classes cost tokens on every read, so only the objects that help most get one: those a call
must send (objects of optional parameters and fields stay `dict`; results are always typed),
nested at most `MAX_NEST` deep, whose fields fit in `MAX_CLASS` characters (`MAX_RESULT_CLASS`
in results). Everything else stays `dict`, with its fields in the tool docs. With these limits
whole-catalog stubs stay smaller than a format that types every object as `dict` and the
return as `dict` (measured by `benchmarks/tokens.py`, checked by `tests/stubs/test_catalogs.py`).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .names import is_identifier
from .nodes import single_option
from .refs import MAX_DEPTH, ref_name, resolve_ref
from .schema import Renderer, _Union, py_literal
from .tool import properties_of, required_of

__all__ = ["MAX_CLASS", "MAX_NEST", "MAX_RESULT_CLASS", "TypeTable", "TypedRenderer", "class_name", "result_hint"]

MAX_NEST = 2
"""Objects inside this many enclosing classes stay `dict` (a parameter's object is at level 0)."""
MAX_CLASS = 240
"""Input objects whose fields take more characters than this stay `dict`: a long class costs
more than it helps a call."""
MAX_RESULT_CLASS = 120
"""The same for objects in results (`outputSchema`)."""

TYPING_NAMES = frozenset({"Any", "Literal", "NotRequired", "Required", "TypedDict"})
_TAKEN = TYPING_NAMES | {"None", "True", "False", "str", "int", "float", "bool", "list", "dict", "object", "type"}
_WORD = re.compile(r"[A-Za-z0-9]+")
GENERIC = frozenset({"Result", "Results", "Output", "Response", "Data", "Value", "Obj", "Object", "Root", "Model"})
"""Class names that say nothing of what a tool returns: the schema's `title` or the tool's name is used instead."""


def result_hint(identifier: str, server: str = "") -> str:
    """What a tool's result class is named after: `list_issues` -> `list_issues_result` (`ListIssuesResult`),
    without its server's name in front (`firecrawl_map` on server `firecrawl` returns a `MapResult`)."""
    if server and identifier.lower().startswith(server.lower() + "_") and len(identifier) > len(server) + 1:
        identifier = identifier[len(server) + 1 :]
    return f"{identifier}_result"


def root_title(root: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    """The object a result is (the output schema, through its `$ref`s and an `X | None`) and the
    schema's own `title` for its class, if it has one that is not generic (`Product`, not `Result`).

    A title is what the upstream calls the value, so it names the result's class before the tool
    does: tools returning a `Product` say so, however many of them there are.
    """
    title = root.get("title")
    if not isinstance(title, str) or generic(title):
        return None
    node: Any = root
    for _ in range(MAX_DEPTH):
        ref = node.get("$ref")
        inner = resolve_ref(ref, root) if isinstance(ref, str) else single_option(node)
        if not isinstance(inner, Mapping) or inner is node:
            break
        node = inner
    return node, title


def generic(hint: str) -> bool:
    """Whether `hint` gives a class name in `GENERIC`, numbered or not (`Result2`); so does "" (`Obj`)."""
    return class_name(hint).rstrip("0123456789") in GENERIC


def class_name(hint: str) -> str:
    """`start` -> `Start`, `rich_text` -> `RichText`, `API-get-user` -> `APIGetUser`; ASCII only."""
    name = "".join(w[0].upper() + w[1:] for w in _WORD.findall(hint))
    if not name:
        return "Obj"
    return "T" + name if name[0].isdigit() else name


class TypeTable:
    """The classes of one stub file, in the order their definitions were completed."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(_TAKEN) | set(taken)
        self._reserved: list[str] = []
        self._by_body: dict[str, str] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._lines: dict[str, str] = {}
        self._fields: dict[str, tuple[tuple[str, str, bool], ...]] = {}

    def reserve(self, hint: str) -> str:
        """A new class name from `hint`, numbered (`Parent2`) when the plain one is taken."""
        base = class_name(hint)
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}{n}"
        self._taken.add(name)
        self._reserved.append(name)
        return name

    def declare(self, hint: str, fields: Sequence[tuple[str, str, bool]], name: str | None = None, *,
                titled: bool = False) -> str:  # fmt: skip
        """The class for `fields` (key, type, required): an identical one if declared, else a new one.

        `name` is a name reserved earlier because the class refers to itself; such a class is
        always declared under it (its body mentions the name, so it cannot match another).
        `titled` says `hint` is a schema's own title, which names the class: an identical class
        is reused only if it was named after the same words (`Product`, `Product2` for another
        shape); the same shape under another title gets a class of its own.
        """
        body, total = _body(fields)
        shape = f"{total}{body}"
        named = (class_name(hint), shape)
        if name is None:
            found = self._by_name.get(named) if titled else self._by_body.get(shape)
            if found is not None:
                return found
            name = self.reserve(hint)
            self._by_body.setdefault(shape, name)
        self._by_name.setdefault(named, name)
        self._lines[name] = _class_line(name, body, total)
        self._fields[name] = tuple(fields)
        return name

    def fields(self, name: str) -> tuple[tuple[str, str, bool], ...] | None:
        """The fields (key, type, required) of class `name` as its line shows them, None if no such class.

        The type is the field's own, without the `NotRequired[...]` or `Required[...]` around it.
        """
        return self._fields.get(name)

    def mark(self) -> tuple[int, int, int, int]:
        return len(self._reserved), len(self._by_body), len(self._by_name), len(self._lines)

    def rollback(self, mark: tuple[int, int, int, int]) -> None:
        """Forget the names and classes declared since `mark` (an object that ended up `dict`)."""
        names, bodies, named, lines = mark
        for name in self._reserved[names:]:
            self._taken.discard(name)
        del self._reserved[names:]
        self._by_body = dict(list(self._by_body.items())[:bodies])
        self._by_name = dict(list(self._by_name.items())[:named])
        self._lines = dict(list(self._lines.items())[:lines])
        self._fields = {name: self._fields[name] for name in self._lines}

    def rename(self, old: str, hint: str) -> str:
        """Give class `old` a new name from `hint`, in every class that mentions it; the new name."""
        new = self.reserve(hint)
        self._lines = {new if k == old else k: rename_in(line, {old: new}) for k, line in self._lines.items()}
        self._fields = {new if k == old else k: tuple((key, rename_in(expr, {old: new}), req) for key, expr, req in f)
                        for k, f in self._fields.items()}  # fmt: skip
        self._by_body = {k: new if v == old else v for k, v in self._by_body.items()}
        self._by_name = {k: new if v == old else v for k, v in self._by_name.items()}
        return new

    def lines(self, used_in: Iterable[str]) -> list[str]:
        """Definitions of the classes the given source lines use, directly or through other classes.

        Rendering can declare a class that ends up unused (an option of a union that became
        `Any`); it is left out here.
        """
        wanted = set()
        stack = [name for line in used_in for name in _names(line) if name in self._lines]
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack += [n for n in _names(self._lines[name]) if n in self._lines]
        return [line for name, line in self._lines.items() if name in wanted]


def _body(fields: Sequence[tuple[str, str, bool]]) -> tuple[str, bool]:
    """Fields as the class shows them; `total=False` when fewer words mark the required ones."""
    optional = sum(1 for _, _, required in fields if not required)
    total = optional <= len(fields) - optional
    parts = []
    for key, expr, required in fields:
        if required != total:
            expr = f"{'NotRequired' if total else 'Required'}[{expr}]"
        parts.append((key, expr))
    if all(is_identifier(key) for key, _ in parts):
        return "; ".join(f"{key}: {expr}" for key, expr in parts), total
    return "{" + ", ".join(f"{py_literal(key)}: {expr}" for key, expr in parts) + "}", total


def _class_line(name: str, body: str, total: bool) -> str:
    flag = "" if total else ", total=False"
    if body.startswith("{"):
        return f'{name} = TypedDict("{name}", {body}{flag})'
    return f"class {name}(TypedDict{flag}): {body}"


def rename_in(line: str, names: Mapping[str, str]) -> str:
    """`line` with every name token in `names` replaced; strings and comments are left alone."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):  # pragma: no cover - the renderers only emit valid Python
        return line
    for tok in reversed(tokens):
        if tok.type == tokenize.NAME and tok.string in names and tok.start[0] == 1:
            line = line[: tok.start[1]] + names[tok.string] + line[tok.end[1] :]
    return line


def _names(source: str) -> set[str]:
    """Names a line of stub source uses (ast, so names inside strings and comments never count)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # pragma: no cover - the renderers only emit valid Python
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


class TypedRenderer(Renderer):
    """A `Renderer` that declares objects with properties as classes in `table`."""

    def __init__(self, root: Mapping[str, Any], table: TypeTable, *, inputs: bool = True) -> None:
        super().__init__(root)
        self.table = table
        self.inputs = inputs
        self._nest = 0
        self._plain = False
        self._pending: dict[str, str | None] = {}
        self._origin = ""
        self._title = None if inputs else root_title(root)

    def expr(self, schema: Mapping[str, Any] | bool, *, hint: str = "", optional: bool = False) -> str:
        """As `Renderer.expr`, except that the object of an `optional` input stays `dict`."""
        saved, self._plain = self._plain, optional and self.inputs
        origin, self._origin = self._origin, hint  # what the whole value goes by: a parameter, a tool's result
        try:
            return super().expr(schema, hint=hint)
        finally:
            self._plain = saved
            self._origin = origin

    def _name_hint(self, hint: str, schema: Mapping[str, Any]) -> str:
        """`hint`, unless it is generic (`Result`, from a `$defs/Result` or a field `result`): then the schema's
        `title`, else, for the value itself (not an object inside it), what the value goes by (`list_issues_result`)."""
        if not generic(hint):
            return hint
        title = schema.get("title")
        if isinstance(title, str) and not generic(title):
            return title
        return self._origin if self._nest == 0 and not generic(self._origin) else hint

    def recursive(self, ref: str) -> str:
        """A ref to an object class still being defined names that class (reserved now)."""
        if ref not in self._pending:
            return super().recursive(ref)
        name = self._pending[ref]
        if name is None:
            name = self._pending[ref] = self.table.reserve(ref_name(ref) or self.hint)
        return name

    def object_type(self, schema: Mapping[str, Any], depth: int) -> str:
        props = properties_of(schema, self.root)
        limit = MAX_CLASS if self.inputs else MAX_RESULT_CLASS
        # every field takes at least 4 characters (`a: T; `), so many fields fail the limit at once
        if not props or self._plain or self._nest >= MAX_NEST or len(props) > limit // 4:
            return super().object_type(schema, depth)
        ref = self._refs[-1] if self._refs and resolve_ref(self._refs[-1], self.root) is schema else None
        outer = dict(self._pending)
        if ref is not None:
            self._pending[ref] = None
        required = set(required_of(schema, self.root))
        hint = self.hint
        mark = self.table.mark()
        fields: list[tuple[str, str, bool]] = []
        self._nest += 1
        try:
            for key, sub in props.items():
                self.hint = key
                self._plain = key not in required and self.inputs
                fields.append((key, self._union(sub, depth + 1).render(), key in required))
        finally:
            self._nest -= 1
            self.hint = hint
            self._plain = False
            reserved = self._pending.pop(ref, None) if ref is not None else None
        if len(_body(fields)[0]) > limit:
            self._undo(mark, outer)
            return super().object_type(schema, depth)
        if self._title is not None and self._nest == 0 and schema is self._title[0]:
            return self.table.declare(self._title[1], fields, reserved, titled=True)
        return self.table.declare(self._name_hint(hint, schema), fields, reserved)

    def _composite(self, schema: Mapping[str, Any], depth: int) -> _Union:
        """`allOf` parts that add up to one object become one class, not an intersection (`dict`).

        A union that says nothing (`Any`: too many members) takes back the classes its members
        declared, so that they neither take names nor appear in the stub.
        """
        members = schema.get("allOf")
        if isinstance(members, list) and members and not _has_union(schema) and properties_of(schema, self.root):
            union = _Union()
            union.add(self.object_type(schema, depth))
            return union
        outer, mark = dict(self._pending), self.table.mark()
        union = super()._composite(schema, depth)
        if union.render() == "Any":
            self._undo(mark, outer)
        return union

    def _undo(self, mark: tuple[int, int, int, int], outer: Mapping[str, str | None]) -> None:
        """Roll the table back to `mark`, unless a class still being defined reserved its name since."""
        if all(self._pending.get(ref) == name for ref, name in outer.items()):
            self.table.rollback(mark)


def _has_union(schema: Mapping[str, Any]) -> bool:
    return any(isinstance(schema.get(k), list) and schema[k] for k in ("anyOf", "oneOf"))
