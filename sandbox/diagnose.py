"""Turn starlark-go exceptions into `ScriptError` fields located in the model's original source.

Positions from starlark-go refer to the rewritten source; lines are the same (the rewrite
never moves them) and columns are mapped back with the rewrite's edits. Errors raised
inside builtins or the prelude carry no script position of their own, so the innermost
`script:` frame of the backtrace is used instead.

Where the model wrote Python that Starlark lacks (`try:`, `import`, f-strings, ...), the
parser's message is led by what to write instead; a server in direct mode is named as such.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
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

_TRY = ('Starlark has no try/except: try_call("server.tool", arg=value) returns {"ok": True, "value": v} '
        'or {"ok": False, "error": msg} instead of stopping the script (try_parallel for a batch)')
_IMPORT = ("Starlark has no import: the tools are already there as server.tool(...), json_encode() and "
           "json_decode() stand in for the json module, and nothing else can be imported")
_NO_GLOBAL = "Starlark has no global or nonlocal: return the new value from the function instead"
_PYTHON_ONLY = {
    "try": _TRY, "except": _TRY, "finally": _TRY,
    "import": _IMPORT, "from": _IMPORT,
    "class": "Starlark has no classes: use dicts for data, and def for functions",
    "with": "Starlark has no with statement (and scripts have no files)",
    "raise": 'Starlark has no raise: stop the script with fail("message")',
    "assert": 'Starlark has no assert: write if not ok: fail("message")',
    "global": _NO_GLOBAL, "nonlocal": _NO_GLOBAL,
    "del": "Starlark has no del: use d.pop(key), or build a new list or dict",
    "yield": "Starlark has no generators: build a list and return it",
    "async": 'Starlark has no async: run calls at once with parallel([("server.tool", {"arg": value}), ...])',
    "await": 'Starlark has no await: run calls at once with parallel([("server.tool", {"arg": value}), ...])',
    "is": "Starlark has no is operator: compare with == (x == None)",
}  # fmt: skip
"""Python keywords Starlark reserves, by what to write instead."""
_FSTRING = re.compile(r"""(?<![\w.])[rR]?[fF][rR]?(?="|')""")
_F_HINT = 'Starlark has no f-strings: write "%s has %d items" % (name, n) or "{} has {} items".format(name, n)'


class Located:
    """The original source and what is needed to point into it."""

    def __init__(self, code: str, edits: Sequence[Edit], servers: Collection[str],
                 direct: Mapping[str, Mapping[str, str]] | None = None) -> None:  # fmt: skip
        self.lines = code.split("\n")
        self.edits = edits
        self.servers = servers
        self.direct = direct or {}
        """Direct-mode servers: {server: {tool: the name its client calls it by}}."""

    def error(self, kind: str, message: str, line: int | None, column: int | None, *,
              mapped: bool = False) -> dict[str, Any]:  # fmt: skip
        """An error dict for the `done` frame, with the column mapped and the source line attached.

        Long messages (a script can `fail()` with any string) and long lines are cut, so the
        frame stays small whatever the script does.
        """
        message = shorten(message)
        if line is None or not 1 <= line <= len(self.lines):
            return {"kind": kind, "message": message, "line": None, "column": None, "source_line": None}
        if column is not None and not mapped:
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
        return _syntax(exc.msg, exc.line, exc.column, where)
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


def _syntax(message: str, line: int, column: int, where: Located) -> dict[str, Any]:
    """The parser's error, led by the Starlark way when the line uses Python that Starlark lacks.

    The caret then points at the Python feature (starlark-go points after the token it stopped at).
    """
    text = where.line_text(line)
    column = original_column(where.edits, line, column) if column > 0 else 0
    first = re.match(r"\s*([A-Za-z_]\w*)", text)
    before = re.search(r"\b([A-Za-z_]\w*)\s*$", text[: max(column - 1, 0)])
    fstring = _FSTRING.search(text) if message.startswith("got string literal") else None
    if first is not None and first.group(1) in _PYTHON_ONLY:
        hint, column = _PYTHON_ONLY[first.group(1)], first.start(1) + 1
    elif before is not None and before.group(1) in _PYTHON_ONLY:
        hint, column = _PYTHON_ONLY[before.group(1)], before.start(1) + 1
    elif fstring is not None:
        hint, column = _F_HINT, fstring.start() + 1
    else:
        return where.error("syntax", message, line, column or None, mapped=True)
    return where.error("syntax", f"{hint} (parser: {message})", line, column, mapped=True)


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
    if name in where.direct:
        return _direct_mode(name, attr.group(1), where.direct[name])
    listed = sorted(where.servers)[:_MAX_LISTED]
    more = ", ..." if len(where.servers) > _MAX_LISTED else ""
    return f"{item.msg} (not a server; servers: {', '.join(listed) or 'none'}{more})"


def _direct_mode(server: str, tool: str, tools: Mapping[str, str]) -> str:
    """Why a direct-mode server is no name in a script, and the name to call its tool by."""
    some = ", ".join(sorted(tools.values())[:3]) + (", ..." if len(tools) > 3 else "")
    how = tools.get(tool, some)
    return (f"{server} is in direct mode: its tools are not in scripts; call them directly ({how}), "
            f'or set mode = "code" for {server} in the gateway config')
