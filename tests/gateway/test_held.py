"""The table of values set aside under tokens (`mcp_gateway/held.py`): taken once, and bounded."""

from __future__ import annotations

import pytest

from mcp_gateway.held import Held


def test_a_value_is_taken_back_once() -> None:
    held: Held[str] = Held(60.0)
    token = held.put("value")
    assert len(token) == 32 and held.take(token) == "value"
    assert held.take(token) is None and held.take("0" * 32) is None


def test_values_nobody_takes_go_after_their_time_and_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    gone: list[str] = []
    held: Held[str] = Held(60.0, dropped=gone.append)
    old = held.put("old")
    monkeypatch.setattr(held, "keep_s", 0.0)
    new = held.put("new")  # puts (and takes) sweep what waited too long
    assert gone == ["old"] and len(held) == 1
    assert held.take(old) is None and gone == ["old", "new"] and held.take(new) is None


def test_a_full_table_loses_its_oldest_first() -> None:
    held: Held[int] = Held(60.0, most=2)
    tokens = [held.put(n) for n in range(5)]
    assert len(held) == 2
    assert [held.take(t) for t in tokens] == [None, None, None, 3, 4]
