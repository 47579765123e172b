"""`limits.memory_mb` holds on what a worker actually has resident, whatever allocates it.

Each pattern of the corpus runs on a fresh worker while a thread here samples the kernel's
high-water mark of the worker's resident memory (VmHWM) every millisecond; the worker's own
report of its peak, when its watchdog stops it, counts too. A pattern must end with the
memory-limit error, with that peak within 10 % of the limit; what fits must complete.
(`benchmarks/sandbox_memory.py` prints the same measurements as a table.)
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from benchmarks.sandbox_memory import CASES
from sandbox import ExecutionResult, Limits, Sandbox
from sandbox.conversation import Conversation
from sandbox.memory import EXIT_MEMORY, MIB, kernel_peak, limit_message, reported_peak
from sandbox.process import Worker

from .conftest import SERVERS, FakeTools

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
LIMIT = Limits(timeout_s=20.0, memory_mb=256)
SLACK = 1.10

OVER: dict[str, str] = {name: code for name, code in CASES.items()
                        if not name.startswith("fits") and name != "tool-result-decoding"}
"""Allocation patterns over any limit: the corpus `benchmarks/sandbox_memory.py` measures."""

FITS: dict[str, tuple[str, object]] = {
    "list": ("x = [1] * 5000000\nresult = len(x)", 5000000),
    "string": ('s = "x" * 50000000\nresult = len(s)', 50000000),
    "garbage": ('n = 0\nfor i in range(100):\n    s = "x" * 10000000\n    n += len(s)\nresult = n', 1000000000),
}


class PeakSampler:
    """The kernel's peak resident memory of `pid`, read every millisecond on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, kernel_peak(self.pid) or 0)
            time.sleep(0.001)

    @contextmanager
    def sampling(self) -> Iterator[PeakSampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


async def measured_run(code: str, limits: Limits, tools: FakeTools) -> tuple[ExecutionResult, bool, int, Worker]:
    """`code` on a fresh worker: (result, whether the worker may be reused, its peak RSS in bytes, the worker)."""
    worker = await Worker.spawn(limits.memory_mb)
    try:
        with PeakSampler(worker.pid).sampling() as sampler:
            result, reusable = await Conversation(worker, tools, limits).run_timed(code, SERVERS)
        peak = max(sampler.peak, worker.memory_peak())
    finally:
        await worker.kill()
    assert result is not None
    return result, reusable, max(peak, worker.peak_rss), worker


@pytest.mark.parametrize("code", list(OVER.values()), ids=list(OVER))
async def test_an_allocation_over_the_limit_is_stopped_within_it(tools: FakeTools, code: str) -> None:
    result, reusable, peak, _ = await measured_run(code, LIMIT, tools)
    assert result.error is not None and result.error.kind == "limit"
    assert result.error.message == "script exceeded the memory limit of 256 MiB (limits.memory_mb)"
    assert not reusable
    assert peak <= SLACK * LIMIT.memory_mb * MIB, f"peak {peak / MIB:.0f} MiB"


@pytest.mark.parametrize(("code", "value"), list(FITS.values()), ids=list(FITS))
async def test_what_fits_completes(tools: FakeTools, code: str, value: object) -> None:
    result, _, peak, _ = await measured_run(code, LIMIT, tools)
    assert result.error is None and result.value == value
    assert peak <= LIMIT.memory_mb * MIB


async def test_the_worker_holds_the_limit_without_the_gateways_watch(
    tools: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the gateway's watch off, the worker's watchdog holds the limit (or, now and then, RLIMIT_DATA first)."""

    async def unguarded(self: Worker, memory_mb: int, interval_s: float = 0.0) -> None:
        return None

    monkeypatch.setattr(Worker, "guard_memory", unguarded)
    result, _, peak, _ = await measured_run(OVER["repeat-list-1e8"], LIMIT, tools)
    assert result.error is not None and result.error.message == limit_message(256)
    assert peak <= SLACK * LIMIT.memory_mb * MIB


WATCHED = """
import time
from sandbox.memory import Watchdog
watchdog = Watchdog()
watchdog.start()
watchdog.arm(64)
held = []
for _ in range(1000):
    held.append(bytearray(1 << 20))  # 1 MiB, zeroed: resident at once
    time.sleep(0.0005)
"""


def test_the_watchdog_stops_its_process_over_the_limit() -> None:
    """The worker's thread alone, in a process without RLIMIT_DATA: exit status, message and peak."""
    done = subprocess.run([sys.executable, "-c", WATCHED], capture_output=True, timeout=30, cwd=ROOT)
    assert done.returncode == EXIT_MEMORY
    line = done.stderr.decode()
    assert line.startswith("sandbox worker: resident memory of ") and line.endswith(
        "is over the memory limit of 64 MiB (limits.memory_mb)\n"
    )
    peak = reported_peak(line)
    assert peak is not None and 64 * MIB < peak <= SLACK * 64 * MIB


async def test_the_gateway_kills_a_worker_over_the_limit() -> None:
    """The gateway's watch alone: an idle worker holds some 20 MiB, over a limit of 1 MiB."""
    worker = await Worker.spawn(LIMIT.memory_mb)
    try:
        with anyio.fail_after(5):
            await worker.guard_memory(1)
            assert await worker.process.wait() != 0
        assert worker.over_memory and worker.peak_rss > MIB
    finally:
        await worker.kill()


async def test_a_worker_left_holding_much_is_replaced(tools: FakeTools) -> None:
    """Over half of the limit still resident after a run: the next script would not get the whole limit."""
    limits = replace(LIMIT, memory_mb=512)
    result, reusable, _, _ = await measured_run("x = [1] * 20000000\nresult = len(x)", limits, tools)
    assert result.value == 20000000 and not reusable
    result, reusable, _, _ = await measured_run("result = 1", limits, tools)
    assert result.value == 1 and reusable


async def test_the_worker_is_replaced_and_other_runs_go_on(tools: FakeTools) -> None:
    async with Sandbox(LIMIT, workers=2) as sb:
        before = set(sb.worker_pids())
        results: dict[str, ExecutionResult] = {}

        async def run(name: str, code: str) -> None:
            results[name] = await sb.run(code, SERVERS, tools)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "bomb", OVER["list-doubling"])
            tg.start_soon(run, "calm", 'util.slow(s=0.5)\nresult = calc.add(a=1, b=2)')
        bomb, calm = results["bomb"], results["calm"]
        assert bomb.error is not None and bomb.error.message == limit_message(256)
        assert calm.error is None and calm.value == 3
        after = set(sb.worker_pids())
        assert len(after) == 2 and len(after & before) == 1
        assert (await sb.run("result = 2", SERVERS, tools)).value == 2


async def test_a_memory_error_in_the_worker_is_the_memory_limit(tools: FakeTools) -> None:
    """Python in the worker (decoding a tool result) runs into RLIMIT_DATA: the limit, not an empty message."""
    limits = replace(LIMIT, memory_mb=128, max_tool_result_bytes=64 << 20)
    result, reusable, _, _ = await measured_run("x = util.nested(n=3000000)", limits, tools)
    assert result.error is not None and result.error.kind == "limit"
    assert result.error.message == limit_message(128)
    assert not reusable


def _out_of_memory(*args: Any) -> Any:
    raise MemoryError


@pytest.mark.parametrize(
    ("code", "line"),
    [("x = util.echo()", 1), ('print("a")\nx = json_decode("[]")', 2), ("result = [1]", None)],
    ids=["tool-call", "json-decode", "result"],
)
def test_a_memory_error_in_a_builtin_or_a_conversion(
    monkeypatch: pytest.MonkeyPatch, code: str, line: int | None
) -> None:
    """Each becomes the limit error (starlark-go alone would give an empty message), and the worker is retired."""
    from sandbox import session

    monkeypatch.setattr(session, "json_decode", _out_of_memory)
    monkeypatch.setattr(session, "plain", _out_of_memory)
    run = session.Session(_out_of_memory, LIMIT)
    value, error = run.execute(code, SERVERS)
    assert value is None and error is not None
    assert (error["kind"], error["message"], error["line"]) == ("limit", limit_message(256), line)
    assert run.out_of_memory
