"""The pool under hostile scripts: timeouts, memory, crashes, cancellation, concurrency."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import anyio
import pytest

from sandbox import Limits, Sandbox, SandboxError

from .conftest import FAST, SERVERS, FakeTools

pytestmark = pytest.mark.anyio

SMALL = replace(FAST, memory_mb=160)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_start_keeps_warm_workers_and_aclose_ends_them(tools: FakeTools) -> None:
    sb = Sandbox(FAST, workers=2)
    await sb.start()
    pids = sb.worker_pids()
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    await sb.aclose()
    assert not any(_alive(p) for p in pids)
    with pytest.raises(SandboxError):
        await sb.run("x = 1", SERVERS, tools)


async def test_infinite_loop_is_killed_and_the_pool_recovers(tools: FakeTools) -> None:
    async with Sandbox(replace(FAST, timeout_s=1.0), workers=1) as sb:
        [pid] = sb.worker_pids()
        started = time.monotonic()
        run = await sb.run("while True:\n    pass\n", SERVERS, tools)
        assert time.monotonic() - started < 2.0
        assert run.error is not None and run.error.kind == "limit"
        assert run.error.message == "script exceeded the time limit of 1 s (limits.timeout_s)"
        assert not _alive(pid)
        run = await sb.run("result = calc.add(a=1, b=2)", SERVERS, tools)
        assert run.error is None and run.value == 3
        assert sb.worker_pids() != [pid]


async def test_timeout_covers_a_slow_tool(tools: FakeTools) -> None:
    async with Sandbox(replace(FAST, timeout_s=0.5), workers=1) as sb:
        started = time.monotonic()
        run = await sb.run("util.slow(s=30)", SERVERS, tools)
        assert time.monotonic() - started < 1.5
        assert run.error is not None and "time limit of 0.5 s" in run.error.message
        assert run.tool_calls == 1


@pytest.mark.parametrize(
    "code",
    [
        'l = []\nfor i in range(10000000):\n    l.append("x" * 1000)\n',
        's = "x"\nfor i in range(40):\n    s = s + s\n',
        "def f(n):\n    return f(n + 1)\nf(0)\n",
    ],
    ids=["growing-list", "doubling-string", "recursion"],
)
async def test_memory_bomb_ends_with_a_clear_error(tools: FakeTools, code: str) -> None:
    async with Sandbox(SMALL, workers=1) as sb:
        [pid] = sb.worker_pids()
        run = await sb.run(code, SERVERS, tools)
        assert run.error is not None and run.error.kind == "limit"
        assert run.error.message == "script exceeded the memory limit of 160 MiB (limits.memory_mb)"
        assert not _alive(pid)
        run = await sb.run("result = 1", SERVERS, tools)
        assert run.value == 1 and len(sb.worker_pids()) == 1


async def test_huge_repeat_is_refused_by_starlark(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('x = "x" * 2000000000\n', SERVERS, tools)
    assert run.error is not None and run.error.kind == "runtime"
    assert "excessive repeat" in run.error.message


async def test_four_concurrent_runs_share_two_workers(sandbox: Sandbox, tools: FakeTools) -> None:
    pids = set(sandbox.worker_pids())
    results: dict[int, object] = {}

    async def one(i: int) -> None:
        run = await sandbox.run(f"util.slow(s=0.3)\nresult = {i}", SERVERS, tools)
        assert run.error is None
        results[i] = run.value

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(one, i)
    assert results == {0: 0, 1: 1, 2: 2, 3: 3}
    assert time.monotonic() - started >= 0.6  # two rounds: never more than two workers
    assert set(sandbox.worker_pids()) == pids


@pytest.mark.parametrize("code", ["while True:\n    pass\n", "util.slow(s=30)\n"], ids=["busy", "in-tool"])
async def test_cancelling_a_run_kills_its_worker(tools: FakeTools, code: str) -> None:
    async with Sandbox(replace(FAST, timeout_s=30), workers=1) as sb:
        [pid] = sb.worker_pids()
        with anyio.move_on_after(0.5) as scope:
            await sb.run(code, SERVERS, tools)
        assert scope.cancelled_caught
        assert not _alive(pid)
        run = await sb.run("result = 2", SERVERS, tools)
        assert run.value == 2
        assert pid not in sb.worker_pids()


async def test_a_worker_killed_while_idle_is_replaced(sandbox: Sandbox, tools: FakeTools) -> None:
    for pid in sandbox.worker_pids():
        os.kill(pid, signal.SIGKILL)
    run = await sandbox.run("result = 3", SERVERS, tools)
    assert run.error is None and run.value == 3


async def test_per_run_limits_override_the_pool(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("util.echo()\nutil.echo()", SERVERS, tools, replace(FAST, max_tool_calls=1))
    assert run.error is not None and "limit of 1 tool calls" in run.error.message
    run = await sandbox.run("util.echo()\nutil.echo()", SERVERS, tools)
    assert run.error is None and run.tool_calls == 2


def test_limits_refuse_what_a_worker_cannot_honour() -> None:
    with pytest.raises(ValueError, match="memory_mb must be at least 128"):
        Limits(memory_mb=64)
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        Limits(timeout_s=0)


async def test_closing_during_a_run_ends_it_with_an_error(tools: FakeTools) -> None:
    sb = Sandbox(FAST, workers=1)
    await sb.start()
    [pid] = sb.worker_pids()
    outcome = []

    async def runner() -> None:
        outcome.append(await sb.run("util.slow(s=30)", SERVERS, tools))

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await anyio.sleep(0.3)
        await sb.aclose()
    [run] = outcome
    assert run.error is not None and run.error.message == "the sandbox was closed during the run"
    assert not _alive(pid) and sb.worker_pids() == []
