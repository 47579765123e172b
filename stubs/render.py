"""Python stub files for upstream tools: one `def` line per tool, compact enough to read whole.

A stub is what a model reads before writing a script, so it says exactly what a call needs
(keyword names, types, defaults, return type, one-line summary) and nothing else; the rest is
in `render_docs`. Output is byte-identical for identical input and always parses as Python.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Sequence

from .docs import render_docs
from .schema import Renderer, py_literal
from .tool import Param, ToolSpec, param_map, parameters

__all__ = [
    "ToolSpec",
    "first_sentence",
    "param_map",
    "render_docs",
    "render_server_stub",
    "render_signature",
    "render_tool_stub",
    "server_path",
    "tool_path",
]

MAX_DEFAULT = 40
"""Longer defaults show as `...` in a signature (the docs give them in full)."""

_CALL_HINT = "in executeToolCode; getToolDocs(server, tool) for full docs."
_ABBREVIATIONS = frozenset({"e.g", "i.e", "vs", "cf", "approx", "incl"})
_SENTENCE_END = re.compile(r"\.(?=\s)")
_ZWJ = "\u200d"


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


def render_signature(tool: ToolSpec) -> str:
    """One stub line: `def ident(a: int, b: str | None = None) -> T: ...  # summary`."""
    inputs = Renderer(tool.input_schema)
    args = ", ".join(_parameter(p, inputs) for p in parameters(tool))
    output = tool.output_schema
    returns = Renderer(output).expr(output) if output else "Any"
    line = f"def {tool.identifier}({args}) -> {returns}: ..."
    summary = first_sentence(tool.description)
    return f"{line}  # {summary}" if summary else line


def _parameter(param: Param, renderer: Renderer) -> str:
    if param.required:
        return f"{param.identifier}: {renderer.expr(param.schema)}"
    if param.has_default and param.default is not None:
        value = py_literal(param.default)
        shown = value if len(value) <= MAX_DEFAULT else "..."
        return f"{param.identifier}: {renderer.expr(param.schema)} = {shown}"
    return f"{param.identifier}: {renderer.expr(param.schema, or_none=True)} = None"


def render_server_stub(server: str, tools: Sequence[ToolSpec], *, header: str | None = None) -> str:
    """`servers/<server>.pyi`: a header comment, the typing import if needed, one def per tool."""
    count = f"{len(tools)} tool" + ("" if len(tools) == 1 else "s")
    default = f"# {server_path(server)} — {count}. Call as {server}.<tool>(arg=value) {_CALL_HINT}"
    ordered = sorted(tools, key=lambda t: (t.identifier, t.name))
    return _module(default if header is None else header, [render_signature(t) for t in ordered])


def render_tool_stub(server: str, tool: ToolSpec) -> str:
    """`servers/<server>/<tool>.pyi`: the same format for a single tool."""
    path = tool_path(server, tool.identifier)
    header = f"# {path} — call as {server}.{tool.identifier}(arg=value) {_CALL_HINT}"
    return _module(header, [render_signature(tool)])


def _module(header: str, defs: list[str]) -> str:
    lines = [ln if ln.startswith("#") else f"# {ln}" for ln in _clean(header).splitlines() if ln.strip()]
    names = _typing_names("\n".join(defs))
    if names:
        lines.append(f"from typing import {', '.join(sorted(names))}")
    if defs:
        lines += ["", *defs]
    return "\n".join(lines) + "\n" if lines else ""


def _typing_names(source: str) -> set[str]:
    """The `typing` names the defs use, read from the syntax tree so strings and comments never count."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # pragma: no cover - rendering only emits valid Python; stay usable if not
        return {"Any", "Literal"}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return used & {"Any", "Literal"}
