"""The queue for workers under one greedy key: round-robin between keys, bounds, timeouts, extra workers."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from functools import partial

import anyio
import pytest
from anyio.abc import TaskGroup

from sandbox import PoolLimits, Sandbox

from .conftest import FAST, SERVERS, FakeTools

pytestmark = pytest.mark.anyio

ONE = PoolLimits(max_workers=1)
"""A pool of exactly one worker: the order of runs is the order of the queue."""


def _start(tg: TaskGroup, sb: Sandbox, tools: FakeTools, code: str, owner: str) -> None:
    """Start a run of `owner` in the background."""
    tg.start_soon(partial(sb.run, code, SERVERS, tools, owner=owner))


async def _settle() -> None:
    """Let the tasks just started reach the queue."""
    await anyio.sleep(0.05)


async def test_a_key_waiting_on_slow_tools_does_not_hold_up_another_key(tools: FakeTools) -> None:
    """The issue's figure: six scripts of A each awaiting a 3-5 s tool call, B's `1 + 1` under 1 s."""
    waits: list[float] = []
    async with Sandbox(replace(FAST, timeout_s=30), workers=2) as sb, anyio.create_task_group() as tg:
        for i in range(6):
            _start(tg, sb, tools, f"util.slow(s={3 + i % 3})", "A")
        await anyio.sleep(0.3)
        assert sb.queue.running_of("A") == 2 and sb.queue.queued == 4  # A holds both warm workers
        for _ in range(3):
            started = time.monotonic()
            run = await sb.run("result = 1 + 1", SERVERS, tools, owner="B")
            waits.append(time.monotonic() - started)
            assert run.error is None and run.value == 2
            assert len(sb.worker_pids()) <= sb.max_workers
        assert sb.queue.running_of("A") == 2  # A never got B's extra worker
        tg.cancel_scope.cancel()
    assert sb.queue.queued == 0 and sb.queue.running == 0  # the cancelled runs, waiting or not, left nothing
    print(f"\nB's `result = 1 + 1` behind 6 slow scripts of A: {', '.join(f'{w:.3f}' for w in waits)} s, "
          f"median {statistics.median(waits):.3f} s")
    assert max(waits) < 1.0


async def test_owners_take_turns(tools: FakeTools) -> None:
    async with Sandbox(FAST, workers=1, pool=ONE) as sb, anyio.create_task_group() as tg:
        _start(tg, sb, tools, "util.slow(s=0.3)", "X")
        await _settle()
        for tag in ("a1", "a2", "a3", "b1", "b2", "b3", "c1"):
            _start(tg, sb, tools, f'util.echo(tag="{tag}")', tag[0])
            await anyio.sleep(0.01)
    order = [args["tag"] for name, args in tools.calls if name == "util.echo"]
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3", "b3"]  # not first come, first served


async def test_an_owner_with_fewer_runs_goes_first(tools: FakeTools) -> None:
    """Two warm workers both held by A: when one frees, B (nothing running) gets it, not A's next."""
    async with Sandbox(FAST, workers=2, pool=PoolLimits(max_workers=2)) as sb, anyio.create_task_group() as tg:
        _start(tg, sb, tools, "util.slow(s=0.3)", "A")
        _start(tg, sb, tools, "util.slow(s=0.6)", "A")
        await _settle()
        _start(tg, sb, tools, 'util.echo(tag="a")', "A")
        await anyio.sleep(0.01)
        _start(tg, sb, tools, 'util.echo(tag="b")', "B")
        await _settle()
        assert sb.queue.queued == 2
    assert [args["tag"] for name, args in tools.calls if name == "util.echo"] == ["b", "a"]


async def test_a_full_queue_of_one_key_refuses_at_once(tools: FakeTools) -> None:
    pool = PoolLimits(max_workers=1, max_queued_per_key=2)
    async with Sandbox(FAST, workers=1, pool=pool) as sb, anyio.create_task_group() as tg:
        _start(tg, sb, tools, "util.slow(s=0.5)", "A")
        await _settle()
        for _ in range(2):
            _start(tg, sb, tools, "result = 1", "A")
        await _settle()
        started = time.monotonic()
        run = await sb.run("result = 1", SERVERS, tools, owner="A")
        assert time.monotonic() - started < 0.2
        assert run.error is not None and run.error.kind == "limit"
        assert run.error.message == (
            "this key already has 2 scripts waiting for a sandbox worker, the most it may queue "
            "(limits.max_queued_per_key); wait for them to finish before sending more"
        )
        run = await sb.run("result = 2", SERVERS, tools, owner="B")  # another key still gets in
        assert run.error is None and run.value == 2
    assert sb.queue.queued == 0 and sb.queue.running == 0


async def test_a_full_queue_refuses_every_key(tools: FakeTools) -> None:
    pool = PoolLimits(max_workers=1, max_queued=3)
    async with Sandbox(FAST, workers=1, pool=pool) as sb, anyio.create_task_group() as tg:
        _start(tg, sb, tools, "util.slow(s=0.5)", "A")
        await _settle()
        for owner in ("A", "B", "C"):
            _start(tg, sb, tools, "result = 1", owner)
        await _settle()
        run = await sb.run("result = 1", SERVERS, tools, owner="D")
        assert run.error is not None and run.error.kind == "limit"
        assert run.error.message == (
            "3 scripts are already waiting for a sandbox worker, the most the gateway queues (limits.max_queued); "
            "the gateway is busy with other scripts; try again shortly"
        )


async def test_a_run_that_waits_too_long_fails(tools: FakeTools) -> None:
    async with Sandbox(FAST, workers=1, pool=replace(ONE, queue_timeout_s=0.3)) as sb:
        async with anyio.create_task_group() as tg:
            _start(tg, sb, tools, "util.slow(s=3)", "A")
            await _settle()
            started = time.monotonic()
            run = await sb.run("result = 1", SERVERS, tools, owner="B")
            assert 0.25 < time.monotonic() - started < 0.6
            tg.cancel_scope.cancel()
        assert run.error is not None and run.error.kind == "limit"
        assert run.error.message == (
            "script waited 0.3 s for a sandbox worker without getting one (limits.queue_timeout_s); "
            "the gateway is busy with other scripts; try again shortly"
        )
        assert sb.queue.queued == 0
        run = await sb.run("result = 1", SERVERS, tools, owner="B")
        assert run.value == 1


async def test_the_wait_counts_against_the_time_limit(tools: FakeTools) -> None:
    async with Sandbox(replace(FAST, timeout_s=1.0), workers=1, pool=ONE) as sb, anyio.create_task_group() as tg:
        _start(tg, sb, tools, "util.slow(s=0.5)", "A")
        await _settle()
        started = time.monotonic()
        run = await sb.run("util.slow(s=0.8)", SERVERS, tools, owner="B")  # 0.45 s waiting + 0.8 s > 1 s
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.3
    assert run.error is not None and run.error.kind == "limit"
    assert run.error.message.startswith("script exceeded the time limit of 1 s (limits.timeout_s), 0.")
    assert run.error.message.endswith(" s of it waiting for a sandbox worker")


async def test_extra_workers_are_bounded_and_retired(tools: FakeTools) -> None:
    seen: list[int] = []
    async with Sandbox(FAST, workers=1, pool=PoolLimits(max_workers=3)) as sb:
        async with anyio.create_task_group() as tg:
            for owner in "ABCDE":
                _start(tg, sb, tools, "util.slow(s=0.4)", owner)
            for _ in range(12):
                await anyio.sleep(0.08)
                seen.append(len(sb.worker_pids()))
                assert sb.queue.running <= 3
        assert 1 < max(seen) <= 3  # extra workers for the other keys, never more than max_workers
        assert len(sb.worker_pids()) == 1  # back to the warm pool once idle


async def test_closing_ends_the_runs_still_waiting(tools: FakeTools) -> None:
    sb = Sandbox(FAST, workers=1, pool=ONE)
    await sb.start()
    outcome = []

    async def waiting() -> None:
        outcome.append(await sb.run("result = 1", SERVERS, tools, owner="B"))

    async with anyio.create_task_group() as tg:
        _start(tg, sb, tools, "util.slow(s=30)", "A")
        await _settle()
        tg.start_soon(waiting)
        await _settle()
        await sb.aclose()
    [run] = outcome
    assert run.error is not None and run.error.kind == "runtime"
    assert run.error.message == "the sandbox was closed while the script waited for a worker"
    assert sb.worker_pids() == []


def test_pool_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        Sandbox(workers=4, pool=PoolLimits(max_workers=2))
    with pytest.raises(ValueError, match="queue_timeout_s must be positive"):
        PoolLimits(queue_timeout_s=0)
    assert Sandbox(workers=3).max_workers == 6
