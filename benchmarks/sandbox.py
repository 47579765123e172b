"""Code Mode's sandbox: what a script costs over a direct call, workers, `parallel` fan-out, concurrent scripts.

The gateway paths run everything on 127.0.0.1 as separate processes: the fixture upstream
(`tests/fixtures/hostile_server.py`, streamable HTTP) and the gateway (`mcp-gateway serve`),
with the SDK `Client` as the caller, as in `overhead.py`. The upstream is configured twice,
as `d` in direct mode and `c` in Code Mode, so both paths reach the same tool. The worker
rows use `Sandbox` in this process, with a tool caller that answers at once. Prints a
markdown table; every loop is bounded by the arguments.

    .venv/bin/python benchmarks/sandbox.py [--calls 300] [--fanout 30] [--clients 8] [--per-client 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import check, fixture_server, gateway, timed  # noqa: E402

from sandbox import Limits, Sandbox  # noqa: E402
from sandbox.process import Worker  # noqa: E402

ONE_CALL = "result = c.ping()"
FANOUT = 'result = parallel([("c.nap", {"ms": 100})] * 10)'
SEQUENTIAL = 'result = [c.nap(ms=100) for i in range(10)]'
GOAL_OVERHEAD_MS = 5.0
GOAL_FANOUT_MS = 150.0



async def paired(a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]], n: int) -> tuple[list[float], ...]:
    """`a` and `b` alternately, so that load from elsewhere falls on both alike; (a, b, b - a per pair)."""
    await timed(a, 0, 10)
    await timed(b, 0, 10)
    first, second, diff = [], [], []
    for _ in range(n):
        [x] = await timed(a, 1, 0)
        [y] = await timed(b, 1, 0)
        first.append(x)
        second.append(y)
        diff.append(y - x)
    return first, second, diff


def p50(ms: list[float]) -> float:
    return statistics.median(ms)


def p95(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=20)[18] if len(ms) > 1 else ms[0]


def row(label: str, ms: list[float], goal: str = "", met: bool | None = None) -> str:
    verdict = "" if met is None else ("yes" if met else "**no**")
    return f"| {label} | {p50(ms):.2f} | {p95(ms):.2f} | {goal} | {verdict} |"


async def worker_rows(calls: int) -> list[str]:
    """Worker start and reuse, measured on `Sandbox` directly (no MCP, no HTTP)."""

    async def answer(name: str, args: dict[str, Any]) -> Any:
        return "pong"

    starts = []
    for _ in range(10):
        start = time.perf_counter()
        worker = await Worker.spawn(Limits().memory_mb)
        starts.append((time.perf_counter() - start) * 1000)
        await worker.kill()
    async with Sandbox(Limits(), workers=2) as sb:
        bare = await timed(lambda: sb.run("result = 1", ["c"], answer), calls, 10)
        one = await timed(lambda: sb.run(ONE_CALL, ["c"], answer), calls, 10)
        fan = await timed(lambda: sb.run('result = parallel([("c.ping", {})] * 10)', ["c"], answer), calls, 10)
    return [
        row("worker start: spawn to ready (a new process)", starts),
        row('warm worker: `result = 1` (`Sandbox.run`, in process)', bare),
        row("warm worker: one-call script, caller answers at once", one),
        row("warm worker: `parallel` of 10 calls, caller answers at once", fan),
    ]


async def throughput(url: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    """`clients` SDK clients each running `per_client` one-call scripts at the same time."""
    latencies: list[float] = []

    async def one_client() -> None:
        async with Client(url) as client:
            for _ in range(per_client):
                start = time.perf_counter()
                check(await client.call_tool("executeToolCode", {"code": ONE_CALL}))
                latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(one_client)
    return clients * per_client / (time.perf_counter() - start), latencies


async def main(calls: int, fanout: int, clients: int, per_client: int) -> None:
    async with fixture_server("hostile_server") as upstream, \
            gateway(f'[servers.d]\nurl = "{upstream}"\nmode = "direct"\n'
                    f'[servers.c]\nurl = "{upstream}"\nmode = "code"\n') as (gateway_url, _):
        async with Client(gateway_url) as gw:
            await timed(lambda: gw.call_tool("executeToolCode", {"code": ONE_CALL}), 0, 20)
            direct, script, overhead = await paired(
                lambda: gw.call_tool("d_ping", {}),
                lambda: gw.call_tool("executeToolCode", {"code": ONE_CALL}),
                calls,
            )
            bare = await timed(lambda: gw.call_tool("executeToolCode", {"code": "result = 1"}), calls, 10)
            fan = await timed(lambda: gw.call_tool("executeToolCode", {"code": FANOUT}), fanout, 3)
            seq = await timed(lambda: gw.call_tool("executeToolCode", {"code": SEQUENTIAL}), 3, 1)
        alone, alone_ms = await throughput(gateway_url, 1, per_client)
        many, many_ms = await throughput(gateway_url, clients, per_client)
    rows = await worker_rows(calls)

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average at the end {load}; ", end="")
    print("gateway `[limits] workers` = 2 (default); (a) and (b) alternate call by call\n")
    print("| measure | p50 ms | p95 ms | goal | met |\n|---|---|---|---|---|")
    print(row(f"(a) tools/call through the gateway, direct mode (`d_ping`), n={calls}", direct))
    print(row(f"(b) executeToolCode `{ONE_CALL}`, n={calls}", script))
    ok = p50(overhead) < GOAL_OVERHEAD_MS
    print(row("(b) - (a), pair by pair: what the script adds", overhead, f"p50 < {GOAL_OVERHEAD_MS:g} ms", ok))
    print(row("executeToolCode `result = 1` (no tool call)", bare))
    ok = p50(fan) < GOAL_FANOUT_MS
    print(row(f"fan-out: `parallel` of 10 x `c.nap(ms=100)`, n={fanout}", fan, f"p50 < {GOAL_FANOUT_MS:g} ms", ok))
    print(row("the same 10 naps one after the other, n=3", seq))
    print(row(f"one-call scripts, 1 client x {per_client}: latency", alone_ms))
    print(row(f"one-call scripts, {clients} clients x {per_client} at once: latency", many_ms))
    for line in rows:
        print(line)
    print(f"\nthroughput of one-call scripts: {alone:.0f}/s with 1 client, {many:.0f}/s with {clients} clients at once")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--fanout", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=40)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.fanout, args.clients, args.per_client)
