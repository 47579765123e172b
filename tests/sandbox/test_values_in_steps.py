"""`encode_plain` is `encode_json(plain(...))` in bounded steps, and `json_steps` is `json.dumps` in steps.

A tool result crosses to a script's worker as the JSON text of its plain form; for a big result
(170,000 small objects) making that form in Python held the gateway's event loop for 0.4 s.
The stepped conversion must give the very same text, or the very same error, for any value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.values import (
    STEP_ITEMS,
    BoundaryError,
    NotEncodable,
    TooLarge,
    encode_json,
    encode_plain,
    finish,
    json_steps,
    plain,
)

ANY_TEXT = st.text(max_size=8) | st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d\ude00", "\U0001f600", "\\u0000",
                                                 "\\\\ud800", "\\\ud800", "é", '"\\'])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ANY_TEXT, inner, max_size=5),
                      max_leaves=40)
ODD = st.recursive(SCALARS | st.sampled_from([(1, 2), frozenset({3}), b"x", object(), math.nan])
                   | st.just(5000).map(lambda digits: 10**digits),
                   lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers() | ANY_TEXT, inner,
                                                                                 max_size=4), max_leaves=20)


def run(steps: Generator[None, None, str]) -> tuple[str, int]:
    """What the generator returns, and how many steps it took."""
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, count  # type: ignore[no-any-return]
        count += 1


def reference(value: Any, max_depth: int, max_bytes: int | None = None) -> str | tuple[type, str]:
    try:
        return encode_json(plain(value, max_depth, "v", max_bytes))
    except BoundaryError as exc:
        return type(exc), str(exc)


def stepped(value: Any, max_depth: int, max_bytes: int | None = None) -> str | tuple[type, str]:
    try:
        return run(encode_plain(value, max_depth, "v", max_bytes))[0]
    except BoundaryError as exc:
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, depth=st.integers(min_value=1, max_value=6))
def test_the_same_text_for_any_plain_value_and_the_same_error_past_the_depth(value: Any, depth: int) -> None:
    assert stepped(value, depth) == reference(value, depth)


@settings(max_examples=300, deadline=None)
@given(value=ODD)
def test_values_that_are_not_plain_take_plain_itself(value: Any) -> None:
    assert stepped(value, 8) == reference(value, 8)


@settings(max_examples=200, deadline=None)
@given(value=VALUES)
def test_json_as_json_loads_makes_it_is_the_same(value: Any) -> None:
    parsed = json.loads(json.dumps(value))  # pairs of surrogate escapes become one character, as from any upstream
    assert stepped(parsed, 64) == reference(parsed, 64)


def test_long_containers_go_in_many_short_steps() -> None:
    items = [{"i": n, "s": "x", "t": "\x00" if n % 997 == 0 else "é"} for n in range(20 * STEP_ITEMS)]
    value = {"items": items, "by": {str(n): n for n in range(3 * STEP_ITEMS)}, "rows": [[1] * 50] * STEP_ITEMS}
    text, steps = run(encode_plain(value, 64))
    assert text == encode_json(plain(value, 64))
    assert steps >= 20


def test_over_max_bytes_is_too_large_at_once() -> None:
    value = ["x" * 100] * (10 * STEP_ITEMS)
    with pytest.raises(TooLarge) as caught:
        run(encode_plain(value, 64, "the result", max_bytes=50_000))
    assert 50_000 < caught.value.at_least < 200_000
    with pytest.raises(TooLarge, match="at least 2002"):
        run(encode_plain("x" * 2000, 8, max_bytes=1000))


def test_keys_that_clean_alike_keep_the_last_value_as_plain_does() -> None:
    for value in ({"\x00": 10**5000, "\ud800": None}, {"a": 1, **{f"k{n}": n for n in range(STEP_ITEMS)}, "\udc00": 2,
                                                         "\x00": 3}):
        assert stepped(value, 8) == reference(value, 8)
    assert stepped({"\x00": 1, "\ud800": 2}, 8) == '{"\\ufffd":2}'


def test_an_int_json_cannot_hold_is_not_encodable() -> None:
    with pytest.raises(NotEncodable):
        run(encode_plain([10**5000], 8))


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                          | ANY_TEXT, lambda inner: st.lists(inner) | st.dictionaries(ANY_TEXT, inner), max_leaves=40))
def test_json_steps_is_compact_ascii_json(value: Any) -> None:
    assert run(json_steps(value))[0] == json.dumps(value, separators=(",", ":"))


def test_json_steps_refuses_nan_and_splits_long_lists() -> None:
    with pytest.raises(ValueError):
        run(json_steps({"a": [math.inf]}))
    value = {"items": list(range(5 * STEP_ITEMS)), "deep": [[[[list(range(3))]]]]}
    text, steps = run(json_steps(value))
    assert json.loads(text) == value and steps >= 5


@pytest.mark.anyio
async def test_finish_runs_the_steps() -> None:
    assert await finish(encode_plain({"a": ["\ud800"]}, 8)) == '{"a":["\\ufffd"]}'
