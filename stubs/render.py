"""Python stub files for upstream tools: one `def` line per tool, compact enough to read whole.

A stub is what a model reads before writing a script, so it says exactly what a call needs
(keyword names, types with their object shapes, defaults, return type, one-line summary, the
constraints a call most often breaks) and nothing else; the rest is in `render_docs`. Object
types are one-line TypedDicts above the defs (`stubs.typed`). Output is byte-identical for
identical input and always parses as Python.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .nodes import bound, effective
from .schema import Renderer, py_literal
from .tool import Param, ToolSpec, parameters
from .typed import TYPING_NAMES, TypedRenderer, TypeTable, class_name, rename_in, result_hint

__all__ = [
    "first_sentence",
    "param_notes",
    "render_server_stub",
    "render_signature",
    "render_tool_stub",
    "server_path",
    "stub_order",
    "stub_types",
    "tool_path",
]

MAX_DEFAULT = 40
"""Longer defaults show as `...` in a signature (the docs give them in full)."""
MAX_SUMMARY = 120
"""Characters of the description's first sentence a stub line keeps."""
MAX_NOTE = 40
"""Longer patterns are left to the docs."""
NOTED_FORMATS = frozenset({"date-time", "date", "time", "duration"})
"""String formats worth a note in the stub: the ones a model must spell exactly. The docs list all."""
_HUGE = 2**31 - 1

_CALL_HINT = "in executeToolCode. Full docs: getToolDocs(server, tool)."
_ABBREVIATIONS = frozenset({"e.g", "i.e", "vs", "cf", "approx", "incl"})
_SENTENCE_END = re.compile(r"\.(?=\s)")
_ZWJ = "\u200d"
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")


def server_path(server: str) -> str:
    return f"servers/{server}.pyi"


def tool_path(server: str, identifier: str) -> str:
    return f"servers/{server}/{identifier}.pyi"


def first_sentence(text: str, limit: int = 120) -> str:
    """The summary for a stub comment: first line, up to its first `. `, on one line.

    Control characters are dropped so the comment cannot end early or break parsing, and a long
    sentence is cut at a word (or at least a whole-character) boundary and marked with `…`.
    """
    lines = _clean(text).strip().split("\n", 1)
    return _shorten(_up_to_period(" ".join(lines[0].split())), limit)


def _clean(text: str) -> str:
    """Line breaks become `\\n`, every other control character a space."""
    text = text.replace("\r\n", "\n")
    return "".join(
        "\n" if ch in "\r\x85\u2028\u2029" else " " if unicodedata.category(ch) == "Cc" and ch != "\n" else ch
        for ch in text
    )


def _up_to_period(line: str) -> str:
    for match in _SENTENCE_END.finditer(line):
        words = line[: match.start()].split()
        if words and words[-1].lower() not in _ABBREVIATIONS:
            return line[: match.start()]
    if line.endswith(".") and not line.endswith(".."):
        return line[:-1]
    return line


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = max(limit - 1, 0)
    space = text.rfind(" ", 0, cut + 1)
    if space >= limit // 2:
        cut = space
    cut = _grapheme_boundary(text, cut)
    return text[:cut].rstrip(" ,;:-") + "…"


def _grapheme_boundary(text: str, i: int) -> int:
    """Move `i` left until cutting there leaves no accent, emoji modifier or flag half behind."""
    while 0 < i < len(text) and _joined(text, i):
        i -= 1
    return i


def _joined(text: str, i: int) -> bool:
    before, ch = text[i - 1], text[i]
    if before == _ZWJ or ch == _ZWJ or unicodedata.category(ch) in ("Mn", "Mc", "Me"):
        return True
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True
    return _is_flag_half(text, i)


def _is_flag_half(text: str, i: int) -> bool:
    """Regional indicators pair up into flags; an odd count before `i` means a pair is split."""
    def regional(c: str) -> bool:
        return 0x1F1E6 <= ord(c) <= 0x1F1FF

    if not regional(text[i]):
        return False
    run = 0
    while i - run - 1 >= 0 and regional(text[i - run - 1]):
        run += 1
    return run % 2 == 1


def render_signature(tool: ToolSpec, table: TypeTable | None = None, server: str = "") -> str:
    """One stub line: `def ident(a: int, b: str = None) -> T: ...  # summary [notes]`.

    With a `table`, objects are named TypedDicts collected there (the caller writes them out);
    without one they are `dict`. A parameter shown `= None` may be left out: `None` there
    means "not sent", and the type says what a value must be when it is sent.
    """
    params = parameters(tool)
    inputs = _renderer(tool.input_schema, table)
    args = ", ".join(_parameter(p, inputs) for p in params)
    output = tool.output_schema
    hint = result_hint(tool.identifier, server)
    returns = _renderer(output, table, inputs=False).expr(output, hint=hint) if output else ""
    line = f"def {tool.identifier}({args}){' -> ' + returns if returns else ''}: ..."
    summary = first_sentence(tool.description, MAX_SUMMARY)
    comment = " ".join(x for x in (summary, param_notes(params, tool.input_schema)) if x)
    return f"{line}  # {comment}" if comment else line


def _renderer(root: Mapping[str, Any], table: TypeTable | None, *, inputs: bool = True) -> Renderer:
    return Renderer(root) if table is None else TypedRenderer(root, table, inputs=inputs)


def _parameter(param: Param, renderer: Renderer) -> str:
    annotation = renderer.expr(param.schema, hint=param.name, optional=not param.required)
    if param.required:
        return f"{param.identifier}: {annotation}"
    if param.has_default and param.default is not None:
        value = py_literal(param.default)
        shown = value if len(value) <= MAX_DEFAULT else "..."
        return f"{param.identifier}: {annotation} = {shown}"
    return f"{param.identifier}: {annotation} = None"


def param_notes(params: Sequence[Param], root: Mapping[str, Any]) -> str:
    """Constraints a call must respect, compactly: `[per_page: 1..100; since: date-time]`.

    Only what the type cannot say and a first call often gets wrong: numeric ranges, date and
    time formats, short patterns of required parameters; nested fields have theirs in the docs.
    """
    notes = []
    for param in params:
        found = _constraint(effective(param.schema, root, [])[0] or {}, param.required)
        if found:
            notes.append(f"{param.identifier}: {found}")
    return f"[{'; '.join(notes)}]" if notes else ""


def _constraint(node: Mapping[str, Any], required: bool) -> str:
    """`1..100`, `<=50`, `>=10`, `date-time`, `/^[a-z]+$/` (for required parameters).

    Lower bounds that any count meets (0, 1) are left out, and so are patterns of parameters
    a call can leave out.
    """
    parts = []
    low, high = _note_bound(node, "minimum", "exclusiveMinimum"), _note_bound(node, "maximum", "exclusiveMaximum")
    if high is not None:
        if low is not None and not low[1] and not high[1]:
            parts.append(f"{py_literal(low[0])}..{py_literal(high[0])}")
        else:
            if low is not None:
                parts.append(f"{'>' if low[1] else '>='}{py_literal(low[0])}")
            parts.append(f"{'<' if high[1] else '<='}{py_literal(high[0])}")
    elif low is not None and not (low[0] in (0, 1) and not low[1]) and not (low[0] == 0 and low[1]):
        parts.append(f"{'>' if low[1] else '>='}{py_literal(low[0])}")
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in NOTED_FORMATS:
        parts.append(fmt)
    pattern = node.get("pattern")
    if required and isinstance(pattern, str) and pattern and len(pattern) <= MAX_NOTE:
        parts.append(f"/{_one_line(pattern)}/")
    return " ".join(parts)


def _note_bound(node: Mapping[str, Any], key: str, exclusive: str) -> tuple[float, bool] | None:
    """One side of a numeric range as the docs read it, unless it is too large to be worth a note.

    Bounds at or beyond the 32-bit integer limits (`2**31 - 1`, `2**53 - 1` and so on) only
    restate the type and say nothing a call needs, so they count as absent (and so do the
    infinite and NaN ones, which fail the comparison).
    """
    side = bound(node, key, exclusive)
    return side if side is not None and abs(side[0]) < _HUGE else None


def _one_line(text: str) -> str:
    """Notes live in a comment: no line breaks or control characters that could end it."""
    return " ".join(_clean(text).split())


def render_server_stub(server: str, tools: Sequence[ToolSpec], *, header: str | None = None) -> str:
    """`servers/<server>.pyi`: a header comment, the typing import, the classes, one def per tool."""
    count = f"{len(tools)} tool" + ("" if len(tools) == 1 else "s")
    default = f"# {server_path(server)} — {count}; call as {server}.<tool>(arg=value) {_CALL_HINT}"
    return _module(default if header is None else header, stub_order(tools), server)


def stub_order(tools: Sequence[ToolSpec]) -> list[ToolSpec]:
    """A server's tools in the order its stub declares them (which decides its classes' names)."""
    return sorted(tools, key=lambda t: (t.identifier, t.name))


def render_tool_stub(server: str, tool: ToolSpec) -> str:
    """`servers/<server>/<tool>.pyi`: the same format for a single tool."""
    path = tool_path(server, tool.identifier)
    header = f"# {path} — call as {server}.{tool.identifier}(arg=value) {_CALL_HINT}"
    return _module(header, [tool], server)


@dataclass(frozen=True)
class StubTypes:
    """The types of one stub file: its classes, its `def` lines in order, and the line of each tool (by identifier)."""

    table: TypeTable
    lines: tuple[str, ...]
    defs: Mapping[str, str]


def stub_types(server: str, tools: Sequence[ToolSpec]) -> StubTypes:
    """The classes and `def` lines of a stub of `tools`, in its order (`render_server_stub` sorts them).

    The docs read their class names here, so that they name every type as the stub does.
    """
    table = TypeTable(t.identifier for t in tools)
    defs = _shared_results(tools, [render_signature(t, table, server) for t in tools], table, server)
    by_identifier: dict[str, str] = {}
    for tool, line in zip(tools, defs, strict=True):
        by_identifier.setdefault(tool.identifier, line)
    return StubTypes(table, tuple(defs), by_identifier)


def _module(header: str, tools: Sequence[ToolSpec], server: str) -> str:
    """Header, `from typing import ...`, the TypedDicts the defs use (one line each), the defs."""
    types = stub_types(server, tools)
    defs = list(types.lines)
    classes = types.table.lines(defs)
    lines = [ln if ln.startswith("#") else f"# {ln}" for ln in _clean(header).splitlines() if ln.strip()]
    names = _typing_names("\n".join(classes + defs))
    if names:
        lines.append(f"from typing import {', '.join(sorted(names))}")
    if classes:
        lines += ["", *classes]
    if defs:
        lines += ["", *defs]
    return "\n".join(lines) + "\n" if lines else ""


def _shared_results(tools: Sequence[ToolSpec], defs: list[str], table: TypeTable, server: str) -> list[str]:
    """Rename a result class that several tools return, named after the first: `MonitorResult`.

    Identical classes are declared once, so the first tool to return a shape names it; for the
    others that name would mislead (`read_file` returning a `CreateDirectoryResult`). The new
    name comes from the words the tools' names start with in common, else from the server's name
    (`FilesystemResult`), else it is `Result`. A class named by its schema's title (`Product`) is
    not named after any tool, so it keeps that name.
    """
    owners: dict[str, list[str]] = {}
    for tool, line in zip(tools, defs, strict=True):
        func = ast.parse(line).body[0]
        if isinstance(func, ast.FunctionDef) and isinstance(func.returns, ast.Name):
            owners.setdefault(func.returns.id, []).append(result_hint(tool.identifier, server))
    renames: dict[str, str] = {}
    for name, hints in owners.items():
        if len(hints) > 1 and name in {class_name(h) for h in hints}:
            common = _common_words([h.removesuffix("_result") for h in hints])
            renames[name] = table.rename(name, f"{common or server}_result")
    return [rename_in(line, renames) for line in defs] if renames else defs


def _common_words(names: Sequence[str]) -> str:
    """The leading words all names share: `monitor_get`, `monitor_run` -> `monitor`."""
    split = [_WORDS.findall(n) for n in names]
    common: list[str] = []
    for words in zip(*split, strict=False):
        if len({w.lower() for w in words}) != 1:
            break
        common.append(words[0])
    return "_".join(common)


def _typing_names(source: str) -> set[str]:
    """The `typing` names the defs use, read from the syntax tree so strings and comments never count."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # pragma: no cover - rendering only emits valid Python; stay usable if not
        return set(TYPING_NAMES)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return used & TYPING_NAMES
