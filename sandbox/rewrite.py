"""Source rewrite that turns `server.tool(...)` into `_sb_call_tool("server.tool", ...)`.

starlark-go cannot expose Python objects with attributes, so tool calls are routed through
one builtin of the prelude instead, under a reserved name so that a script defining its own
`call_tool` does not change what `server.tool(...)` does. The rewrite works on tokens from
the standard `tokenize` module (Starlark's lexical syntax is close enough to Python's), so
string literals and comments are never touched, and it splices by position on the same line,
so line numbers never change and column shifts stay on the rewritten line, where
`original_column` undoes them.

A call written as an item of `parallel([...])` or `try_parallel([...])` would run at once and
hand its result to the batch, which takes `("server.tool", {args})` pairs: it is routed to
`NOT_A_PAIR` instead, which runs nothing and says how to write the pair.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

CALL_TOOL = "_sb_call_tool"
NOT_A_PAIR = "_sb_not_a_pair"
BATCHES = frozenset({"parallel", "try_parallel"})
DIRECT = " is called directly as "
"""Joins `server.tool` and a direct-mode tool's own name in the server list a script runs with."""


def direct_tool(ref: str, name: str) -> str:
    """A direct-mode tool as it is listed among a script's servers, so that errors can say how to call it.

    Not an identifier, so no call is ever routed to it; `split_servers` takes such items apart.
    """
    return f"{ref}{DIRECT}{name}"


def split_servers(servers: Collection[str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(script servers, {direct-mode server: {tool: the name its client calls it by}})."""
    plain: list[str] = []
    direct: dict[str, dict[str, str]] = {}
    for item in servers:
        ref, found, name = item.partition(DIRECT)
        if not found:
            plain.append(item)
            continue
        server, _, tool = ref.partition(".")
        direct.setdefault(server, {})[tool] = name
    return plain, direct

_LAYOUT = frozenset(
    {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
)
# Python 3.12+ splits f-strings into tokens; Starlark has no f-strings, so their insides are skipped.
_FSTRING_START = getattr(tokenize, "FSTRING_START", -1)
_FSTRING_END = getattr(tokenize, "FSTRING_END", -1)


@dataclass(frozen=True)
class Edit:
    """One replacement on line `row` (1-based): 0-based column spans before and after."""

    row: int
    old_start: int
    old_end: int
    new_start: int
    new_end: int
    text: str


def rewrite(source: str, servers: Collection[str]) -> str:
    """`source` with every direct `server.tool(` call routed through `CALL_TOOL`."""
    return rewrite_with_edits(source, servers)[0]


def rewrite_with_edits(source: str, servers: Collection[str]) -> tuple[str, list[Edit]]:
    """Like `rewrite`, plus the edits made, for mapping error columns back.

    If the source cannot be tokenized it is returned unchanged: Starlark then reports the
    syntax error itself, with positions in the model's own text.
    """
    try:
        tokens = list(_significant(source))
    except (tokenize.TokenError, SyntaxError):
        return source, []
    found = list(_calls(tokens, set(servers), _batch_items(tokens)))
    if not found:
        return source, []
    return _splice(source, found)


def find_name(source: str, prefix: str) -> tuple[int, int, str] | None:
    """(line, 1-based column, name) of the first identifier starting with `prefix`, or None.

    Strings and comments are skipped. A source that cannot be tokenized is searched as
    plain text (Starlark would reject it anyway, so a false find costs nothing).
    """
    if prefix not in source:
        return None
    try:
        for tok in _significant(source):
            if tok.type == tokenize.NAME and tok.string.startswith(prefix):
                return tok.start[0], tok.start[1] + 1, tok.string
        return None
    except (tokenize.TokenError, SyntaxError):
        pass
    found = re.search(rf"(?<!\w){re.escape(prefix)}\w*", source)
    if found is None:
        return None
    line_start = source.rfind("\n", 0, found.start()) + 1
    return source.count("\n", 0, found.start()) + 1, found.start() - line_start + 1, found.group()


def original_column(edits: Sequence[Edit], row: int, column: int) -> int:
    """Map a 1-based `column` on rewritten line `row` to the same place in the original line.

    A column inside inserted text maps to the call's `(` in the original.
    """
    col = column - 1
    shift = 0
    for edit in edits:
        if edit.row != row:
            continue
        if col < edit.new_start:
            break
        if col < edit.new_end:
            return edit.old_end
        shift = edit.old_end - edit.new_end
    return col + shift + 1


def _significant(source: str) -> Iterator[tokenize.TokenInfo]:
    """Tokens that matter for matching: no comments, layout, or f-string insides."""
    nesting = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == _FSTRING_START:
            nesting += 1
        elif tok.type == _FSTRING_END:
            nesting -= 1
        elif nesting == 0 and tok.type not in _LAYOUT:
            yield tok


def _batch_items(tokens: list[tokenize.TokenInfo]) -> dict[int, str]:
    """{index of a `x.y(...)` call that is a whole item of a `parallel(...)` list: the batch's name}.

    Items are those of the list (or tuple) written as the batch's argument, or the argument
    itself; found in one pass with a stack of open brackets. Only a call that is the whole item
    (followed by `,`, the closing bracket or a comprehension's `for`) counts. A script that
    binds the name itself (`def parallel`, `parallel = ...`) keeps its own meaning.
    """
    bound = {t.string for i, t in enumerate(tokens) if t.string in BATCHES and (
        (i > 0 and tokens[i - 1].string == "def") or (i + 1 < len(tokens) and tokens[i + 1].string == "="))}
    batches = BATCHES - bound
    items: dict[int, str] = {}
    closing: dict[int, int] = {}
    opened_at: list[int] = []
    stack: list[tuple[str, bool] | None] = []  # per open bracket: (batch, is its call's paren) if it holds items
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.OP:
            continue
        if tok.string in ("(", "[", "{"):
            before = tokens[i - 1] if i > 0 else None
            top = stack[-1] if stack else None
            if (tok.string == "(" and before is not None and before.type == tokenize.NAME
                    and before.string in batches and (i < 2 or tokens[i - 2].string != ".")):
                stack.append((before.string, True))
            elif tok.string != "{" and top is not None and top[1] and before is not None and before.string == "(":
                stack.append((top[0], False))
            else:
                stack.append(None)
            opened_at.append(i)
            opened = stack[-1]
            if opened is not None:
                items[i + 1] = opened[0]
        elif tok.string in (")", "]", "}"):
            if stack:
                stack.pop()
                closing[opened_at.pop()] = i
        elif tok.string == "," and stack and (top := stack[-1]) is not None:
            items[i + 1] = top[0]
    return {i: batch for i, batch in items.items() if _whole_call(tokens, i, closing)}


def _whole_call(tokens: list[tokenize.TokenInfo], i: int, closing: dict[int, int]) -> bool:
    """True if tokens[i:] start `name . name ( ... )` followed by `,`, a closing bracket or `for`."""
    if i + 3 >= len(tokens) or [t.string for t in tokens[i + 1 : i + 4 : 2]] != [".", "("]:
        return False
    end = closing.get(i + 3)
    return end is not None and end + 1 < len(tokens) and tokens[end + 1].string in (",", ")", "]", "for")


def _calls(tokens: list[tokenize.TokenInfo], servers: set[str],
           batch_items: dict[int, str]) -> Iterator[tuple[int, int, int, str]]:  # fmt: skip
    """(row, start col, end col, replacement) for each `server . tool (` on one line."""
    for i in range(len(tokens) - 3):
        name, dot, tool, paren = tokens[i : i + 4]
        if not (name.type == tokenize.NAME and name.string in servers):
            continue
        if dot.string != "." or tool.type != tokenize.NAME or paren.string != "(":
            continue
        if i > 0 and tokens[i - 1].string == ".":
            continue
        if name.start[0] != paren.end[0]:
            continue
        no_args = i + 4 < len(tokens) and tokens[i + 4].string == ")"
        batch = batch_items.get(i)
        head = f'{NOT_A_PAIR}("{batch}", "{name.string}.{tool.string}"' if batch else (
            f'{CALL_TOOL}("{name.string}.{tool.string}"')
        yield name.start[0], name.start[1], paren.end[1], head if no_args else head + ", "


def _splice(source: str, found: list[tuple[int, int, int, str]]) -> tuple[str, list[Edit]]:
    """Apply the replacements line by line, recording where each one landed."""
    lines = io.StringIO(source).readlines()
    edits: list[Edit] = []
    by_row: dict[int, list[tuple[int, int, str]]] = {}
    for row, start, end, text in found:
        by_row.setdefault(row, []).append((start, end, text))
    for row, spans in by_row.items():
        line = lines[row - 1]
        parts: list[str] = []
        pos = 0
        new_len = 0
        for start, end, text in sorted(spans):
            parts.append(line[pos:start])
            new_len += start - pos
            edits.append(Edit(row, start, end, new_len, new_len + len(text), text))
            parts.append(text)
            new_len += len(text)
            pos = end
        parts.append(line[pos:])
        lines[row - 1] = "".join(parts)
    return "".join(lines), sorted(edits, key=lambda e: (e.row, e.old_start))
