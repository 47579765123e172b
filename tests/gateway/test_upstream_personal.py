"""Per-caller sessions of an upstream that acts as each caller: a session with a call in flight is never closed
to make room or for idleness (its call would fail as a lost connection, perhaps after the upstream acted)."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from mcp_gateway import upstream_personal
from mcp_gateway.errors import UpstreamUnavailable
from mcp_gateway.upstream_personal import IDLE_S, PersonalSessions, _Session
from tests.helpers import make_config, stdio


def sessions(*busy: bool) -> tuple[PersonalSessions, list[_Session]]:
    config = make_config({"s": stdio("math_server")}).servers["s"]
    personal = PersonalSessions("s", config, lambda seen: {}, lambda owner: cast(Any, None))
    made = []
    for n, calls in enumerate(busy):
        session = _Session(cast(Any, None), cast(Any, None), used=time.monotonic() - IDLE_S - 100 + n, calls=int(calls))
        personal._sessions[f"user:{n}"] = session
        made.append(session)
    return personal, made


def test_idle_sessions_close_and_busy_ones_stay() -> None:
    personal, (busy, idle) = sessions(True, False)
    personal._close_idle()
    assert list(personal._sessions) == ["user:0"] and not busy.done.is_set() and idle.done.is_set()


def test_room_is_made_from_the_least_recently_used_idle_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_personal, "MAX_SESSIONS", 3)
    personal, made = sessions(True, False, False)
    personal._make_room()
    assert list(personal._sessions) == ["user:0", "user:2"] and made[1].done.is_set()
    personal, _ = sessions(True, True, True)
    with pytest.raises(UpstreamUnavailable, match="all 3 callers' sessions are busy"):
        personal._make_room()
    assert len(personal._sessions) == 3
