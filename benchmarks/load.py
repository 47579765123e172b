"""Throughput and latency under concurrent clients: direct, through the gateway, through the fastmcp proxy.

Each level runs C concurrent SDK clients (separate sessions) making a fixed number of calls of a
trivial tool over streamable HTTP on 127.0.0.1. The upstream, the gateway and the fastmcp proxy
are separate processes; the clients share this one. Bounded: --calls per client, per level.

    .venv/bin/python benchmarks/load.py [--levels 1 10 50] [--calls 40] [--fastmcp /path/to/venv/bin/fastmcp]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import anyio
from common import concurrent, fixture_server, free_port, gateway, process, rss_mb, wait_for_port
from mcp import Client


async def level(url: str, tool: str, clients: int, calls: int) -> tuple[float, list[float], int]:
    return await concurrent(lambda: Client(url), lambda c, n, i: c.call_tool(tool, {"a": i, "b": 1}), clients, calls)


def row(name: str, clients: int, elapsed: float, ms: list[float], errors: int, rss: str) -> str:
    q = statistics.quantiles(ms, n=100)
    return (f"| {name} | {clients} | {len(ms) / elapsed:.0f} | {statistics.median(ms):.2f} | {q[94]:.2f} | "
            f"{q[98]:.2f} | {errors} | {rss} |")


@contextlib.asynccontextmanager
async def no_gateway(upstream: str) -> AsyncIterator[tuple[str, int | None]]:
    yield upstream, None


@contextlib.asynccontextmanager
async def fastmcp_proxy(fastmcp: str, upstream: str) -> AsyncIterator[tuple[str, int | None]]:
    port = free_port()
    with process([fastmcp, "run", upstream, "-t", "http", "--port", str(port)]) as proc:
        await wait_for_port(port, 60)
        yield f"http://127.0.0.1:{port}/mcp", proc.pid


async def main(levels: list[int], calls: int, fastmcp: str | None) -> None:
    print(f"{calls} calls per client per level; tool `add` of tests/fixtures/math_server.py over streamable HTTP\n")
    print("| target | clients | calls/s | p50 ms | p95 ms | p99 ms | errors | server RSS MB before -> after |")
    print("|---|---|---|---|---|---|---|---|")
    async with fixture_server("math_server") as upstream:
        servers = f'[servers.m]\nurl = "{upstream}"\nmode = "direct"\n'
        targets: list[tuple[str, Callable[[], AbstractAsyncContextManager[tuple[str, int | None]]]]] = [
            ("direct (no gateway)", lambda: no_gateway(upstream)),
            ("mcp-gateway", lambda: gateway(servers, prefix_direct_tools=False)),
        ]
        if fastmcp:
            targets.append(("fastmcp 4.1.2 proxy", lambda: fastmcp_proxy(fastmcp, upstream)))
        for name, serve in targets:
            async with serve() as (url, pid):
                for clients in levels:
                    before = rss_mb(pid) if pid else 0.0
                    elapsed, ms, errors = await level(url, "add", clients, calls)
                    rss = f"{before:.0f} -> {rss_mb(pid):.0f}" if pid else "-"
                    print(row(name, clients, elapsed, ms, errors, rss), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--fastmcp", help="path of a fastmcp 4.1.2 executable (a separate venv)")
    args = parser.parse_args()
    anyio.run(main, args.levels, args.calls, args.fastmcp)
