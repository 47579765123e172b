"""Turn starlark-go exceptions into `ScriptError` fields located in the model's original source.

Positions from starlark-go refer to the rewritten source; lines are the same (the rewrite
never moves them) and columns are mapped back with the rewrite's edits. Errors raised
inside builtins or the prelude carry no script position of their own, so the innermost
`script:` frame of the backtrace is used instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

import starlark_go as sg

from .rewrite import Edit, original_column

SCRIPT = "script"
_FRAME = re.compile(rf"^\s*{SCRIPT}:(\d+):(\d+): in ", re.MULTILINE)
_UNDEFINED = re.compile(r"^undefined: (\w+)$")
_NOT_UTF8 = "Python exception while converting from Starlark"
_MAX_LISTED = 20
_MAX_MESSAGE = 2000
_NOTE_ROOM = 48
"""Room for the note `shorten` adds, so a message it shortened is not cut again."""
_BAD_ERROR_TEXT = "EvalError.__init__()"
"""In the TypeError starlark-go's binding raises when an error's message is not valid UTF-8."""
_MAX_SOURCE_LINE = 240


class Located:
    """The original source and what is needed to point into it."""

    def __init__(self, code: str, edits: Sequence[Edit], servers: Collection[str]) -> None:
        self.lines = code.split("\n")
        self.edits = edits
        self.servers = servers

    def error(self, kind: str, message: str, line: int | None, column: int | None) -> dict[str, Any]:
        """An error dict for the `done` frame, with the column mapped and the source line attached.

        Long messages (a script can `fail()` with any string) and long lines are cut, so the
        frame stays small whatever the script does.
        """
        message = shorten(message)
        if line is None or not 1 <= line <= len(self.lines):
            return {"kind": kind, "message": message, "line": None, "column": None, "source_line": None}
        if column is not None:
            column = original_column(self.edits, line, column) if column > 0 else None
        source_line: str | None = self.lines[line - 1].rstrip("\r")
        if source_line is not None and len(source_line) > _MAX_SOURCE_LINE:
            # keep the start of the line so the caret, if within it, still points right
            source_line = None if (column or 0) > _MAX_SOURCE_LINE else source_line[:_MAX_SOURCE_LINE] + " ..."
        return {"kind": kind, "message": message, "line": line, "column": column, "source_line": source_line}

    def line_text(self, line: int) -> str:
        return self.lines[line - 1] if 1 <= line <= len(self.lines) else ""


def shorten(message: str, more: int = 0) -> str:
    """`message` cut to `_MAX_MESSAGE` characters, noting how many more there were.

    `more` counts characters already cut off before. A message that fits, or that was
    shortened here before (its note fits in `_NOTE_ROOM`), is left as it is.
    """
    if more <= 0 and len(message) <= _MAX_MESSAGE + _NOTE_ROOM:
        return message
    more = max(more, 0) + max(0, len(message) - _MAX_MESSAGE)
    return f"{message[:_MAX_MESSAGE]}... ({more} more characters)"


def describe(exc: Exception, where: Located, failure: tuple[str, str] | None) -> dict[str, Any]:
    """The error dict for `exc`; `failure` is (kind, message) recorded by a builtin that raised it."""
    if isinstance(exc, sg.SyntaxError):
        return where.error("syntax", exc.msg, exc.line, exc.column)
    if isinstance(exc, sg.ResolveError):
        return _resolve(exc, where)
    if isinstance(exc, sg.EvalError):
        kind, message = failure or ("runtime", _explain(str(exc.args[0]) if exc.args else exc.error))
        line, column = _eval_position(exc)
        return where.error(kind, message, line, column)
    if failure is None and isinstance(exc, TypeError) and _BAD_ERROR_TEXT in str(exc):
        return where.error("runtime", _BAD_ERROR, None, None)
    kind, message = failure or ("runtime", _explain(str(exc)))
    return where.error(kind, message, None, None)


_BAD_ERROR = (
    "the script stopped with an error whose message is not valid UTF-8, so neither it nor its line "
    "can be shown (usually a string cut inside a multi-byte character, e.g. by a slice, used as a "
    "name or in an error; to slice by character use list(s.codepoints()))"
)


def _explain(message: str) -> str:
    """starlark-go's message for a string that is not UTF-8, said in terms a script author can act on."""
    if _NOT_UTF8 not in message:
        return message
    return (
        "a string that is not valid UTF-8 cannot leave the script (usually a slice that cuts a "
        "multi-byte character; to slice by character use list(s.codepoints()))"
    )


def _eval_position(exc: sg.EvalError) -> tuple[int | None, int | None]:
    if exc.filename == SCRIPT and exc.line > 0:
        return exc.line, exc.column
    frames = _FRAME.findall(exc.backtrace or "")
    if not frames:
        return None, None
    line, column = frames[-1]
    return int(line), int(column)


def _resolve(exc: sg.ResolveError, where: Located) -> dict[str, Any]:
    """All unresolved names in one message, each with a hint when it looks like a tool call."""
    items = exc.errors or []
    if not items:
        return where.error("resolve", exc.error, None, None)
    notes = [_resolve_note(item, where) for item in items]
    message = notes[0]
    for item, note in zip(items[1:], notes[1:], strict=True):
        column = original_column(where.edits, item.line, item.column)
        message += f"; also line {item.line}, column {column}: {note}"
    return where.error("resolve", message, items[0].line, items[0].column)


def _resolve_note(item: sg.ResolveErrorItem, where: Located) -> str:
    """`item.msg`, or for `server.tool` used without a call, how to call it."""
    found = _UNDEFINED.match(item.msg)
    if found is None:
        return item.msg
    name = found.group(1)
    column = original_column(where.edits, item.line, item.column)
    rest = where.line_text(item.line)[column - 1 :]
    attr = re.match(rf"{re.escape(name)}\s*\.\s*(\w+)", rest)
    if attr is None:
        if name in where.servers:  # e.g. getattr(server, "tool") or a server passed as a value
            return f"{item.msg} (a server is not a value: call its tools as {name}.<tool>(x=1))"
        return item.msg
    if name in where.servers:
        ref = f"{name}.{attr.group(1)}"
        return f"{ref} must be called directly, e.g. {ref}(x=1)"
    listed = sorted(where.servers)[:_MAX_LISTED]
    more = ", ..." if len(where.servers) > _MAX_LISTED else ""
    return f"{item.msg} (not a server; servers: {', '.join(listed) or 'none'}{more})"
