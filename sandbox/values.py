"""Values crossing the script boundary: tool arguments and results, `result`, json_encode/decode.

Everything that crosses is reduced to JSON-like data (None, bool, int, float, str, list,
dict with str keys) so both sides, and the JSON frames between them, agree on it. Depth is
bounded because starlark-go converts recursively on the Go stack, and strings are made safe
to convert: a lone surrogate makes starlark-go's string conversion fail, and a NUL ends it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


class BoundaryError(ValueError):
    """A value that cannot cross the boundary; the message says which and why."""


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
        raise BoundaryError(f"cannot encode value as JSON: {exc}") from None


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
