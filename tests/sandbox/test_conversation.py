"""The gateway's side of a run against a worker that does not play by the rules.

A real worker checks its limits before it asks; these tests replace it with scripted frames
to show that the gateway enforces them again, whatever the worker process sends.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from sandbox.conversation import Conversation

from .conftest import FAST, FakeTools

pytestmark = pytest.mark.anyio


class ScriptedWorker:
    """Stands in for `process.Worker`: answers `receive` from a list, records what is sent."""

    pid = 0
    over_memory = False

    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self.frames = [{"op": "started"}, *frames]
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(json.loads(json.dumps(message)))
        return True

    async def send_encoded(self, body: str) -> bool:
        self.sent.append(json.loads(body))
        return True

    async def receive(self, max_bytes: int) -> dict[str, Any] | None:
        return self.frames.pop(0) if self.frames else None

    async def exit_code(self) -> int | None:
        return 1

    def stderr_summary(self) -> str:
        return ""


async def _converse(frames: list[dict[str, Any]], tools: FakeTools, **limits: Any) -> tuple[Any, ScriptedWorker]:
    worker = ScriptedWorker(frames)
    talk = Conversation(worker, tools, replace(FAST, **limits))  # type: ignore[arg-type]
    result, healthy = await talk.run("x = 1", ["calc"])
    assert result is not None
    return (result, healthy), worker


ADD = {"op": "call", "name": "calc.add", "args": {"a": 1, "b": 2}}
DONE = {"op": "done", "output": "", "value": None, "error": None}


async def test_calls_beyond_max_tool_calls_are_refused(tools: FakeTools) -> None:
    (result, healthy), worker = await _converse([ADD] * 5 + [DONE], tools, max_tool_calls=3)
    replies = worker.sent[1:]  # after the `run` frame
    assert [r["ok"] for r in replies] == [True, True, True, False, False]
    assert replies[3]["error"] == "script exceeded the limit of 3 tool calls (limits.max_tool_calls)"
    assert len(tools.calls) == 3 and result.tool_calls == 3 and healthy


async def test_a_batch_beyond_max_tool_calls_is_refused_whole(tools: FakeTools) -> None:
    batch = {"op": "calls", "calls": [{"name": "calc.add", "args": {"a": 1, "b": 1}}] * 4, "stop_on_error": False}
    (result, _), worker = await _converse([ADD, batch, DONE], tools, max_tool_calls=4)
    assert worker.sent[2] == {
        "op": "replies",
        "error": "script exceeded the limit of 4 tool calls (limits.max_tool_calls)",
    }
    assert len(tools.calls) == 1 and result.tool_calls == 1


async def test_malformed_requests_get_errors_not_calls(tools: FakeTools) -> None:
    frames = [
        {"op": "call", "name": 3, "args": {}},
        {"op": "call", "name": "calc.add", "args": [1, 2]},
        {"op": "calls", "calls": "calc.add"},
        {"op": "calls", "calls": [{"name": "calc.add"}, 7, {"name": "calc.add", "args": {"a": 1, "b": 1}}]},
        DONE,
    ]
    (_, healthy), worker = await _converse(frames, tools)
    assert worker.sent[1]["error"] == worker.sent[2]["error"] == "malformed tool call"
    assert worker.sent[3] == {"op": "replies", "error": "malformed parallel batch"}
    assert worker.sent[4]["replies"] == [
        {"ok": False, "error": "malformed tool call"},
        {"ok": False, "error": "malformed tool call"},
        {"ok": True, "value": 2},
    ]
    assert tools.calls == [("calc.add", {"a": 1, "b": 1})] and healthy


async def test_an_unknown_frame_ends_the_run_and_retires_the_worker(tools: FakeTools) -> None:
    (result, healthy), _ = await _converse([{"op": "exec", "cmd": "rm -rf /"}], tools)
    assert not healthy
    assert result.error is not None and result.error.message == "script worker misbehaved: unexpected frame 'exec'"
