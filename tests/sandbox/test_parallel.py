"""`parallel` and `try_parallel`: one frame out, calls run concurrently in the gateway, one frame back."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import anyio
import pytest

from sandbox import Sandbox, ToolError
from sandbox.conversation import MAX_PARALLEL

from .conftest import FAST, SERVERS, FakeTools

pytestmark = pytest.mark.anyio


class Timed:
    """Tools that sleep, fail or return big text, counting how many run at once and which were cancelled."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.cancelled = 0

    async def __call__(self, name: str, args: dict[str, Any]) -> Any:
        self.started.append(name)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if name == "util.nap":
                await anyio.sleep(args.get("s", 0.1))
                return args.get("tag", "slept")
            if name == "util.fail":
                await anyio.sleep(args.get("s", 0))
                raise ToolError(f"util.fail failed: {args.get('why', 'no reason')}")
            if name == "util.text":
                return "x" * args["n"]
            raise ToolError(f"unknown tool {name}")
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def test_calls_run_concurrently_and_results_keep_their_order(sandbox: Sandbox) -> None:
    tools = Timed()
    # the slowest first: the order of the results is the order of the calls, not of completion
    calls = ", ".join(f'("util.nap", {{"s": {0.2 - i * 0.015:.3f}, "tag": {i}}})' for i in range(10))
    started = time.monotonic()
    run = await sandbox.run(f"result = parallel([{calls}])", SERVERS, tools)
    elapsed = time.monotonic() - started
    assert run.error is None, run.error
    assert run.value == list(range(10))
    assert run.tool_calls == 10 and tools.most == 10
    assert elapsed < 0.5, elapsed  # one after the other would take 1.3 s


async def test_ten_100ms_calls_take_about_100ms(sandbox: Sandbox) -> None:
    tools = Timed()
    code = 'result = parallel([("util.nap", {"s": 0.1})] * 10)'
    await sandbox.run(code, SERVERS, tools)
    best = min([await _timed(sandbox, code, tools) for _ in range(3)])
    assert best < 0.15, best


async def _timed(sandbox: Sandbox, code: str, tools: Any) -> float:
    started = time.monotonic()
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None, run.error
    return time.monotonic() - started


async def test_at_most_sixteen_at_once(sandbox: Sandbox) -> None:
    tools = Timed()
    run = await sandbox.run('result = parallel([("util.nap", {"s": 0.05})] * 40)', SERVERS, tools)
    assert run.error is None and run.value == ["slept"] * 40
    assert tools.most == MAX_PARALLEL == 16


async def test_a_failure_stops_the_script_and_cancels_the_rest(sandbox: Sandbox) -> None:
    tools = Timed()
    code = (
        'print("before")\n'
        'r = parallel([("util.nap", {"s": 0.01}), ("util.fail", {"why": "disk on fire", "s": 0.05}), '
        '("util.nap", {"s": 30})])\n'
        'print("after")\n'
    )
    started = time.monotonic()
    run = await sandbox.run(code, SERVERS, tools)
    assert time.monotonic() - started < 1.0
    assert run.error is not None and run.error.kind == "tool"
    assert run.error.message == "parallel: call 1 (util.fail) failed: util.fail failed: disk on fire"
    assert (run.error.line, run.error.column) == (2, 13)
    assert run.output == "before\n"
    assert tools.cancelled == 1  # the 30 s nap
    assert run.tool_calls == 3


async def test_the_first_call_to_fail_is_reported(sandbox: Sandbox) -> None:
    tools = Timed()
    code = 'parallel([("util.fail", {"why": "late", "s": 0.2}), ("util.nap",), ("util.fail", {"why": "early"})])'
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is not None
    assert run.error.message == "parallel: call 2 (util.fail) failed: util.fail failed: early"
    assert tools.cancelled == 2


async def test_try_parallel_returns_every_outcome(sandbox: Sandbox) -> None:
    tools = Timed()
    code = (
        'result = try_parallel([("util.nap", {"s": 0.05, "tag": "a"}), ["util.fail", {"why": "no"}], '
        '"util.nope", ("util.nap", None)])'
    )
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None, run.error
    assert run.value == [
        {"ok": True, "value": "a"},
        {"ok": False, "error": "util.fail failed: no"},
        {"ok": False, "error": "unknown tool util.nope"},
        {"ok": True, "value": "slept"},
    ]


async def test_empty_batch_makes_no_calls(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("result = [parallel([]), try_parallel(())]", SERVERS, tools)
    assert run.value == [[], []] and run.tool_calls == 0


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ('parallel("calc.add")', 'parallel takes a list of ("server.tool", {"arg": value}) pairs, not a string'),
        ("parallel([1])", "parallel: item 0 is not a"),
        ('try_parallel([("calc.add", {}, 3)])', "try_parallel: item 0 is not a"),
        ('parallel([("calc.add", [1])])', "parallel: item 0: the arguments of calc.add must be a dict, not a list"),
        ('parallel([("calc.add", {1: 2})])', "arguments of calc.add: dict key of type int"),
        ('parallel([("util.echo", {"f": len})])', "a value of type builtin_function_or_method cannot leave"),
    ],
)
async def test_malformed_batches(sandbox: Sandbox, tools: FakeTools, code: str, message: str) -> None:
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is not None and message in run.error.message, run.error
    assert tools.calls == []


async def test_each_call_counts_against_max_tool_calls(sandbox: Sandbox, tools: FakeTools) -> None:
    limits = replace(FAST, max_tool_calls=10)
    run = await sandbox.run('x = parallel([("calc.add", {"a": 1, "b": 1})] * 11)', SERVERS, tools, limits)
    assert run.error is not None and run.error.kind == "limit"
    assert run.error.message == "parallel of 11 calls is over the limit of 10 tool calls (limits.max_tool_calls)"
    code = 'calc.add(a=1, b=1)\nx = try_parallel([("calc.add", {"a": 1, "b": 1})] * 9)\ncalc.add(a=1, b=1)'
    run = await sandbox.run(code, SERVERS, tools, limits)
    assert run.error is not None
    assert run.error.message == "script exceeded the limit of 10 tool calls (limits.max_tool_calls)"
    assert run.tool_calls == 10 and len(tools.calls) == 10


async def test_arguments_of_a_batch_are_bounded_together(sandbox: Sandbox, tools: FakeTools) -> None:
    limits = replace(FAST, max_result_bytes=1000)
    run = await sandbox.run('parallel([("util.echo", {"s": "x" * 400})] * 3)', SERVERS, tools, limits)
    assert run.error is not None and run.error.kind == "limit"
    assert "arguments of the 3 calls of parallel are 1224 bytes together" in run.error.message
    assert "(limits.max_result_bytes)" in run.error.message
    assert tools.calls == []


async def test_tool_results_are_bounded_one_by_one_and_per_batch(sandbox: Sandbox) -> None:
    tools = Timed()
    limits = replace(FAST, max_tool_result_bytes=1000)
    run = await sandbox.run('x = util.text(n=2000)', SERVERS, tools, limits)
    assert run.error is not None and run.error.kind == "tool"
    assert run.error.message.startswith("the result of util.text is at least 2002 bytes as JSON, over the limit")
    assert "(limits.max_tool_result_bytes)" in run.error.message
    run = await sandbox.run('result = try_call("util.text", n=990)', SERVERS, tools, limits)
    assert run.value == {"ok": True, "value": "x" * 990}
    run = await sandbox.run('r = try_parallel([("util.text", {"n": 400})] * 3)\nresult = r', SERVERS, tools, limits)
    assert run.error is None
    assert [r["ok"] for r in run.value] .count(True) == 2
    [failed] = [r["error"] for r in run.value if not r["ok"]]
    assert "takes the results of this parallel batch over the limit of 1000 bytes" in failed


async def test_the_time_limit_covers_the_whole_batch() -> None:
    tools = Timed()
    async with Sandbox(replace(FAST, timeout_s=0.5), workers=1) as sb:
        started = time.monotonic()
        run = await sb.run('parallel([("util.nap", {"s": 30})] * 4)', SERVERS, tools)
        assert time.monotonic() - started < 1.5
        assert run.error is not None and "time limit of 0.5 s (limits.timeout_s)" in run.error.message
        assert tools.cancelled == 4
        run = await sb.run('result = parallel([("util.nap", {"s": 0.01})])', SERVERS, tools)
        assert run.value == ["slept"]
