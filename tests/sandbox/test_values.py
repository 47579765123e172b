"""Values crossing the boundary: JSON-like, bounded in depth, always encodable."""

from __future__ import annotations

import math

import pytest

from sandbox.values import BoundaryError, clean_str, encode_json, json_decode, json_encode, plain


def test_lone_surrogates_become_replacement_characters() -> None:
    assert clean_str("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert clean_str("emoji \U0001f600") == "emoji \U0001f600"


def test_plain_converts_tuples_and_sets_and_keeps_big_ints() -> None:
    value = {"t": (1, 2), "s": {3}, "n": 2**300, "f": 1.5, "k\ud800": None}
    assert plain(value, 8) == {"t": [1, 2], "s": [3], "n": 2**300, "f": 1.5, "k\ufffd": None}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [({1: "x"}, "dict key of type int"), ([object()], "type object cannot cross"), (b"x", "type bytes")],
)
def test_plain_rejects_what_json_cannot_hold(value: object, fragment: str) -> None:
    with pytest.raises(BoundaryError, match=fragment):
        plain(value, 8, "args")


def test_depth_is_bounded_and_cycles_stop() -> None:
    nested: list[object] = []
    nested.append(nested)
    with pytest.raises(BoundaryError, match="nested deeper than 8 levels"):
        plain(nested, 8)
    assert plain([[[1]]], 3) == [[[1]]]
    with pytest.raises(BoundaryError):
        plain([[[[1]]]], 3)


def test_json_helpers() -> None:
    assert json_decode('{"a": [1, 2.5, null, "\\u00e9"]}', 8) == {"a": [1, 2.5, None, "é"]}
    assert json_encode({"a": "é"}) == '{"a": "é"}'
    with pytest.raises(BoundaryError, match="invalid JSON"):
        json_decode("{", 8)
    with pytest.raises(BoundaryError, match="nested deeper"):
        json_decode("[" * 20 + "]" * 20, 8)
    with pytest.raises(BoundaryError, match="json_encode"):
        json_encode(math.nan)


def test_frame_encoding_is_ascii_and_refuses_huge_ints() -> None:
    assert encode_json({"s": "é\ud800"}) == '{"s":"\\u00e9\\ud800"}'
    with pytest.raises(BoundaryError):
        encode_json(10**5000)
