"""Throughput and latency of one replica on SQLite against one, two and three on PostgreSQL behind HAProxy.

Every configuration serves the same trivial direct-mode tool to the same load: C concurrent SDK
clients (2026-07-28 protocol, each with an API key, so every call checks the key and writes its
audit row before and after), each making a fixed number of calls. Replicas, HAProxy, PostgreSQL
and the clients all share this machine's cores: on 2 cores, more replicas add processes competing
for the same CPU, so the multi-replica rows show the cost of the extra hop and coordination, not
the capacity a deployment on separate machines would gain.

    .venv/bin/python benchmarks/scale.py [--clients 10] [--calls 60] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cluster import cluster
from benchmarks.common import concurrent, fixture_stdio, postgres_schema, toml_table


def config(storage_url: str, state: Path) -> str:
    return (toml_table("gateway", {"state_dir": str(state)}) + toml_table("storage", {"url": storage_url})
            + toml_table("servers.math", fixture_stdio("math_server", mode="direct"))
            + toml_table("groups.all", {"tools": ["*"]}))


def make_key(text: str, folder: Path) -> str:
    path = folder / "cli.toml"
    path.write_text(text)
    made = subprocess.run([sys.executable, "-m", "mcp_gateway.cli", "keys", "create", "bench", "--groups", "all",
                           "--config", str(path)], capture_output=True, text=True, timeout=60, check=True)
    return made.stdout.strip()


@contextlib.asynccontextmanager
async def keyed(url: str, key: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def load(url: str, key: str, clients: int, calls: int) -> tuple[float, list[float], int]:
    return await concurrent(lambda: keyed(url, key), lambda c, n, i: c.call_tool("math_add", {"a": i, "b": n}),
                            clients, calls)


async def sequential(url: str, key: str, calls: int) -> list[float]:
    """One client, one call at a time (after 30 untimed ones that warm every replica up): latency alone."""
    samples = []
    async with keyed(url, key) as client:
        for i in range(30 + calls):
            start = time.perf_counter()
            await client.call_tool("math_add", {"a": i, "b": 0})
            if i >= 30:
                samples.append((time.perf_counter() - start) * 1000)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--calls", type=int, default=60, help="calls per client")
    parser.add_argument("--sequential", type=int, default=200, help="calls of the one-client latency run")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = []
    runs = [("1 replica, SQLite", "sqlite", 1, False)] + [
        (f"{n} replica{'s' if n > 1 else ''}, PostgreSQL{', HAProxy' if lb else ''}", "postgres", n, lb)
        for n, lb in ((1, False), (1, True), (2, True), (3, True))
    ]
    for name, backend, replicas, balancer in runs:
        with tempfile.TemporaryDirectory() as tmp:
            async with contextlib.AsyncExitStack() as stack:
                url = (f"sqlite:///{tmp}/gateway.db" if backend == "sqlite"
                       else await stack.enter_async_context(postgres_schema(args.postgres)))
                text = config(url, Path(tmp) / "state")
                key = make_key(text, Path(tmp))
                group = await stack.enter_async_context(cluster(text, replicas, balancer=balancer))
                alone = await sequential(group.url, key, args.sequential)
                elapsed, ms, errors = await load(group.url, key, args.clients, args.calls)
        q = statistics.quantiles(ms, n=100)
        rows.append((name, statistics.median(alone), len(ms) / elapsed, statistics.median(ms), q[98], errors))
    base_alone, base_rate = rows[0][1], rows[0][2]
    print(f"one client x {args.sequential} calls, then {args.clients} clients x {args.calls} calls; a direct-mode "
          "trivial tool, an API key, the audit log on\n")
    print("| setup | 1 client p50 ms | vs SQLite | calls/s, " + f"{args.clients} clients | vs SQLite | p50 ms | p99 ms "
          "| errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, p50_alone, rate, p50, p99, errors in rows:
        print(f"| {name} | {p50_alone:.2f} | {p50_alone - base_alone:+.2f} | {rate:.0f} | {rate / base_rate:.2f}x | "
              f"{p50:.2f} | {p99:.2f} | {errors} |")


if __name__ == "__main__":
    anyio.run(main)
