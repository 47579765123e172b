"""Values crossing the script boundary: tool arguments and results, `result`, json_encode/decode.

Everything that crosses is reduced to JSON-like data (None, bool, int, float, str, list,
dict with str keys) so both sides, and the JSON frames between them, agree on it. Depth is
bounded because starlark-go converts recursively on the Go stack, and strings are made safe
to convert: a lone surrogate makes starlark-go's string conversion fail, and a NUL ends it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Generator, Iterator
from functools import partial
from itertools import chain, islice
from typing import Any

import anyio

_SURROGATE = re.compile("[\ud800-\udfff]")


class BoundaryError(ValueError):
    """A value that cannot cross the boundary; the message says which and why."""


class NotEncodable(BoundaryError):
    """A plain value that JSON still cannot hold (an int past Python's digit limit, say)."""


def clean_str(text: str) -> str:
    """`text` with lone surrogates and NUL characters replaced by U+FFFD.

    A lone surrogate cannot be encoded as UTF-8, and starlark-go's conversions cut a string
    at its first NUL (both ways), which would lose the rest without a word.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


class TooLarge(BoundaryError):
    """A value whose JSON is certainly over a size bound; `at_least` is a lower bound of that size."""

    def __init__(self, what: str, at_least: int, limit: int) -> None:
        super().__init__(f"{what}: value is over {limit} bytes as JSON (at least {at_least})")
        self.at_least = at_least


def plain(value: Any, max_depth: int, what: str = "value", max_bytes: int | None = None) -> Any:
    """A JSON-like copy of `value`; tuples and sets become lists.

    Raises `BoundaryError` for other types, non-string dict keys, or containers nested
    `max_depth` levels deep (which also stops self-referencing structures). With
    `max_bytes`, raises `TooLarge` as soon as the JSON is known to be bigger than that,
    without copying (or encoding) the rest: the count is a lower bound of the compact
    JSON size, so a value that passes may still be somewhat over.
    """
    budget = None if max_bytes is None else _Budget(what, max_bytes)
    return _plain(value, 0, max_depth, what, budget)


class _Budget:
    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.left = limit

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise TooLarge(self.what, self.limit - self.left, self.limit)


def _plain(value: Any, depth: int, max_depth: int, what: str, budget: _Budget | None) -> Any:
    if budget is not None:
        # quotes and characters of a string (escapes only add), at least one character of a
        # number, two brackets of a container; separators are not counted
        budget.spend(len(value) + 2 if isinstance(value, str) else 2 if isinstance(value, list | tuple | dict) else 1)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return clean_str(value)
    if depth >= max_depth:
        raise BoundaryError(f"{what}: value nested deeper than {max_depth} levels (limits.max_depth)")
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, depth + 1, max_depth, what, budget) for item in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise BoundaryError(f"{what}: dict key of type {type(key).__name__}; keys must be strings")
            if budget is not None:
                budget.spend(len(key) + 3)
            out[clean_str(key)] = _plain(item, depth + 1, max_depth, what, budget)
        return out
    raise BoundaryError(
        f"{what}: a value of type {type(value).__name__} cannot cross "
        "(only None, bool, int, float, str, list and dict can)"
    )


def encode_json(value: Any) -> str:
    """Compact, ASCII-only JSON: always encodable, and its length is its size in bytes.

    Raises `BoundaryError` for what JSON cannot hold, e.g. an int over Python's digit limit.
    """
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotEncodable(f"cannot encode value as JSON: {exc}") from None


def json_encode(value: Any) -> str:
    """What a script's `json_encode` returns: standard JSON (no NaN), non-ASCII kept readable."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise BoundaryError(f"json_encode: {exc}") from None


def json_decode(text: str, max_depth: int) -> Any:
    """What a script's `json_decode` returns: the parsed value, bounded like any crossing value."""
    try:
        parsed = json.loads(text)
    except RecursionError:
        raise BoundaryError(f"json_decode: input is nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise BoundaryError(f"json_decode: invalid JSON: {exc}") from None
    return plain(parsed, max_depth, "json_decode input")


# -- the same conversion in bounded steps, for values that already are plain ---------------------------------

STEP_ITEMS = 1000
"""Members of a long list (or dict) encoded in one step: well under a millisecond for small objects."""
CHECK_ITEMS = 20_000
"""Values whose types are checked in one step (by C-speed builtins: a few milliseconds)."""
MAX_PIECES = 4096
"""Members of short containers encoded one by one (so that one big member is a step of its own)."""
MAX_SPLIT_DEPTH = 16
"""Containers deeper than this are encoded whole, unless long."""
STEP_S = 0.002
"""How long `finish` runs steps before it lets the event loop run."""
_PLAIN = frozenset({str, int, float, bool, type(None), list, dict})
_SUSPECT = re.compile(r"\\u(?:0000|d[89a-f])")
"""In ASCII JSON text: a NUL, or a surrogate (half of a character past U+FFFF, or one alone in the string)."""
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)
_RAW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_STRICT = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False, allow_nan=False)


def encode_plain(value: Any, max_depth: int, what: str = "value", max_bytes: int | None = None
                 ) -> Generator[None, None, str]:
    """`encode_json(plain(value, max_depth, what, max_bytes))`, a few times faster and in bounded steps.

    A generator (run it with `finish`): it yields between steps of at most a few milliseconds and
    returns the JSON text, so a big tool result never holds an event loop for long. `plain` copies
    every value in Python (0.4 s for 170,000 small objects, in one go); a value that already is
    plain, as anything `json.loads` made is, needs no copy: its types, keys and depth are checked
    level by level with builtins, then it is encoded in pieces, and only a piece whose text shows
    a NUL or a surrogate goes through `plain` to have its strings cleaned. Anything else (tuples,
    sets, other types, non-string keys, too deep) goes through `plain` whole, which converts it or
    says why not, as it always did. With `max_bytes`, raises `TooLarge` once the text is over it.
    """
    if not (yield from _already_plain(value, max_depth)):
        return encode_json(plain(value, max_depth, what, max_bytes))
    pieces: list[str] = []
    size = 0
    try:
        for piece in _pieces(value, _Split(partial(_encoded, max_depth=max_depth), _unclean_keys)):
            size += len(piece)
            if max_bytes is not None and size > max_bytes:
                raise TooLarge(what, size, max_bytes)
            pieces.append(piece)
            yield
    except TooLarge:
        raise
    except (ValueError, RecursionError) as exc:
        raise NotEncodable(f"cannot encode value as JSON: {exc}") from None
    return "".join(pieces)


async def finish(steps: Generator[None, None, str]) -> str:
    """Run `steps` to its end, letting the event loop run every `STEP_S`."""
    paused = time.monotonic()
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if time.monotonic() - paused >= STEP_S:
            await anyio.sleep(0)
            paused = time.monotonic()


def _already_plain(value: Any, max_depth: int) -> Generator[None, None, bool]:
    """Whether `plain(value, max_depth)` returns `value` unchanged but for cleaned strings (and cannot raise)."""
    level = [value]
    depth = 0
    while level:
        below: list[Any] = []
        for start in range(0, len(level), CHECK_ITEMS):
            run = level[start:start + CHECK_ITEMS]
            kinds = set(map(type, run))
            if not kinds <= _PLAIN:
                return False  # exact types: plain makes a list of a tuple, and other types are refused
            if dict in kinds or list in kinds:
                if depth >= max_depth:
                    return False
                dicts = run if kinds == {dict} else [x for x in run if type(x) is dict]
                if dicts and not set(map(type, chain.from_iterable(dicts))) <= {str}:
                    return False
                below.extend(chain.from_iterable(map(dict.values, dicts)))
                if list in kinds:
                    below.extend(chain.from_iterable(x for x in run if type(x) is list))
            yield
        level = below
        depth += 1
    return True


def json_steps(value: Any, encode: Callable[[Any], str] = _STRICT.encode) -> Generator[None, None, str]:
    """The JSON text of `value` (compact, ASCII; NaN and infinities refused with `ValueError`), in bounded steps.

    A generator like `encode_plain`'s (run it with `finish`); `encode` encodes each piece.
    """
    pieces: list[str] = []
    for piece in _pieces(value, _Split(encode)):
        pieces.append(piece)
        yield
    return "".join(pieces)


class _Split:
    """How `_pieces` splits a value: `encode` encodes a piece; `whole` says which dicts must not be split."""

    def __init__(self, encode: Callable[[Any], str], whole: Callable[[dict[str, Any]], bool] = lambda _: False) -> None:
        self.encode = encode
        self.whole = whole
        self.left = MAX_PIECES


def _pieces(value: Any, split: _Split, depth: int = 0) -> Iterator[str]:
    """The JSON text of a value in pieces: long containers in runs of `STEP_ITEMS` members; the members of
    short ones near the top each on its own (at most `MAX_PIECES` of those in all); anything else whole."""
    kind = type(value)
    if (kind is not list and kind is not dict) or not value or (
            len(value) <= STEP_ITEMS and (split.left < len(value) or depth >= MAX_SPLIT_DEPTH)) or (
            kind is dict and split.whole(value)):
        yield split.encode(value)
        return
    opening, closing = ("[", "]") if kind is list else ("{", "}")
    yield opening
    if len(value) > STEP_ITEMS:
        runs = iter(value) if kind is list else iter(value.items())
        first = True
        while run := list(islice(runs, STEP_ITEMS)):
            text = split.encode(run if kind is list else dict(run))
            yield text[1:-1] if first else "," + text[1:-1]
            first = False
    else:
        split.left -= len(value)
        for index, member in enumerate(value.items() if kind is dict else value):
            if kind is dict:
                key, member = member
                yield ("," if index else "") + split.encode(key) + ":"
            elif index:
                yield ","
            yield from _pieces(member, split, depth + 1)
    yield closing


def _unclean(text: str, value: Any) -> bool:
    """Whether a plain value, encoded as `text`, holds a NUL or a lone surrogate: then `plain` must clean it."""
    if _SUSPECT.search(text) is None:
        return False
    return "\\u0000" in text or _SURROGATE.search(_RAW_ENCODER.encode(value)) is not None


def _unclean_keys(value: dict[str, Any]) -> bool:
    """Keys that `plain` cleans, which may then be equal: such a dict is cleaned whole, so only the last stays."""
    keys = list(value)
    return _unclean(_ENCODER.encode(keys), keys)


def _encoded(value: Any, max_depth: int) -> str:
    """A plain value's JSON text, its strings cleaned by `plain` when it holds a NUL or a lone surrogate."""
    try:
        text = _ENCODER.encode(value)
    except ValueError:  # an int JSON cannot hold, unless cleaned keys made it go
        text = ""
    return _ENCODER.encode(plain(value, max_depth)) if not text or _unclean(text, value) else text
