"""Soak: the gateway under steady load for a bounded time; memory and file descriptors must stay flat.

C clients (separate sessions; each reconnects every 200 calls, so sessions come and go) call a
direct-mode tool and run a one-call Code Mode script, in a loop, against `mcp-gateway serve` (its
own process) in front of an HTTP upstream and a stdio upstream. Every --every seconds the gateway's
RSS, open file descriptors and child processes are sampled from /proc. Stops after --seconds.

    .venv/bin/python benchmarks/soak.py [--seconds 600] [--clients 10] [--every 30]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import anyio
from common import fixture_server, fixture_stdio, gateway, rss_mb, toml_table
from mcp import Client


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> int:
    return sum(len(p.read_text().split()) for p in Path(f"/proc/{pid}/task").glob("*/children"))


async def client_loop(url: str, deadline: float, counts: dict[str, int]) -> None:
    while time.monotonic() < deadline:
        async with Client(url) as client:
            for i in range(100):
                if time.monotonic() >= deadline:
                    return
                try:
                    direct = await client.call_tool("m_add", {"a": i, "b": 1})
                    script = await client.call_tool("executeToolCode", {"code": 'result = t.upper(text="x")'})
                    counts["errors"] += int(direct.is_error) + int(script.is_error)
                except Exception:
                    counts["errors"] += 1
                counts["calls"] += 2


async def main(seconds: float, clients: int, every: float) -> None:
    async with fixture_server("math_server") as upstream, \
            gateway(f'[servers.m]\nurl = "{upstream}"\nmode = "direct"\n'
                    + toml_table("servers.t", fixture_stdio("text_server"))) as (url, pid):
        counts = {"calls": 0, "errors": 0}
        started = time.monotonic()
        deadline = started + seconds
        print(f"{clients} clients for {seconds:.0f} s; samples every {every:.0f} s\n")
        print("| t s | calls | errors | RSS MB | open fds | children |")
        print("|---|---|---|---|---|---|")
        samples: list[tuple[float, int]] = []
        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(client_loop, url, deadline, counts)
            while time.monotonic() < deadline:
                await anyio.sleep(min(every, max(0.0, deadline - time.monotonic())))
                rss, fd = rss_mb(pid), fds(pid)
                samples.append((rss, fd))
                print(f"| {time.monotonic() - started:.0f} | {counts['calls']} | {counts['errors']} | "
                      f"{rss:.1f} | {fd} | {children(pid)} |", flush=True)
        warm = samples[len(samples) // 4] if len(samples) > 3 else samples[0]
        print(f"\nafter warm-up (sample {len(samples) // 4 + 1}) to the end: RSS {warm[0]:.1f} -> "
              f"{samples[-1][0]:.1f} MB ({samples[-1][0] - warm[0]:+.1f}); fds {warm[1]} -> {samples[-1][1]}; "
              f"{counts['calls']} calls, {counts['errors']} errors")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--every", type=float, default=30)
    args = parser.parse_args()
    anyio.run(main, args.seconds, args.clients, args.every)
