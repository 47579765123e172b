"""The gateway under hostile requests: how long its event loop stalls and how much its memory grows.

One `mcp-gateway serve` process (on 127.0.0.1) in front of the hostile fixture upstream; each case
runs while a probe asks `/healthz` every 20 ms. A probe's latency is what any other client would
wait for: the worst one is the longest the event loop was blocked (plus HTTP handling, ~1-2 ms).
The probe is a process of its own, so the time this script's client takes with a big answer is not
counted as the gateway's.
The peak RSS growth is the gateway's VmHWM (reset before each case) minus its RSS before the case.

    .venv/bin/python benchmarks/hostile.py [--only NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import fixture_stdio, gateway, rss_mb, toml_table  # noqa: E402

Case = Callable[[Client, str], Awaitable[str]]
CASES: dict[str, tuple[str, Case]] = {}


def case(name: str, what: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = (what, fn)
        return fn
    return register


async def direct(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    out = await client.call_tool(tool, arguments)
    return "error" if out.is_error else "ok"


async def script(client: Client, code: str) -> str:
    out = await client.call_tool("executeToolCode", {"code": code})
    return " ".join(getattr(b, "text", "")[:90] for b in out.content[:1]).replace("\n", " ")


@case("unique-objects", "direct call, 30,000 object items under uniqueItems (a 1 MiB request)")
async def _unique(client: Client, url: str) -> str:
    return await direct(client, "hd_unique", {"items": [{"id": i, "tag": [i]} for i in range(30_000)]})


@case("read-many-files", "readToolFile naming 200,000 files")
async def _read_many(client: Client, url: str) -> str:
    out = await client.call_tool("readToolFile", {"fileName": ",".join(f"x{i}" for i in range(200_000))})
    return "refused" if out.is_error else "answered"


@case("huge-query", "listToolFiles with a 2 MB query")
async def _query(client: Client, url: str) -> str:
    out = await client.call_tool("listToolFiles", {"query": "ping " * 400_000})
    return "error" if out.is_error else "answered"


@case("many-images", "a script returning 150 image references")
async def _images(client: Client, url: str) -> str:
    return await script(client, "result = [h.image() for i in range(150)]")


@case("memory-bomb", "a script allocating [1] * 10**8")
async def _bomb(client: Client, url: str) -> str:
    return await script(client, "x = [1] * 100000000\nresult = len(x)")


@case("cpu-loop", "a script spinning until its time limit (5 s)")
async def _spin(client: Client, url: str) -> str:
    return await script(client, "n = 0\nfor i in range(1000000000):\n    n += 1\nresult = n")


@case("big-result-script", "a 16 MB result of small objects, into a script")
async def _big_script(client: Client, url: str) -> str:
    return await script(client, 'r = h.objects(mb=16, shape="structured")\nresult = len(r)')


@case("big-result-direct", "a 16 MB result of small objects, called directly")
async def _big_direct(client: Client, url: str) -> str:
    return await direct(client, "hd_objects", {"mb": 16, "shape": "structured"})


@case("result-under-cap-script", "a 3.5 MB result of small objects (under the 4 MiB caps), into a script")
async def _under_script(client: Client, url: str) -> str:
    return await script(client, 'r = h.objects(mb=3.5, shape="structured")\nresult = len(r)')


@case("result-under-cap-direct", "a 3.5 MB result of small objects (under the 4 MiB caps), called directly")
async def _under_direct(client: Client, url: str) -> str:
    return await direct(client, "hd_objects", {"mb": 3.5, "shape": "structured"})


@case("big-request", "a 2 MB request (over max_request_bytes)")
async def _big_request(client: Client, url: str) -> str:
    return await direct(client, "hd_ping", {"x": "y" * 2_000_000})


@case("deep-arguments", "arguments nested 200 levels deep")
async def _deep(client: Client, url: str) -> str:
    value: Any = 1
    for _ in range(200):
        value = [value]
    return await direct(client, "hd_ping", {"x": value})


@case("sessions", "one caller opening 200 HTTP sessions")
async def _sessions(client: Client, url: str) -> str:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    codes: dict[int, int] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(200):
            status = (await http.post(url, json=init, headers=headers)).status_code
            codes[status] = codes.get(status, 0) + 1
    return json.dumps(codes)


@case("silent-connections", "500 connections that send nothing, held 3 s")
async def _silent(client: Client, url: str) -> str:
    port = int(url.split(":")[2].split("/")[0])
    socks = []
    for _ in range(500):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    await anyio.sleep(3)
    for s in socks:
        s.close()
    return f"{len(socks)} opened"


@case("garbage-requests", "1,000 requests that are not HTTP")
async def _garbage(client: Client, url: str) -> str:
    port = int(url.split(":")[2].split("/")[0])
    for _ in range(1000):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"\x16\x03\x01 not http\r\n\r\n")
            s.settimeout(2)
            s.recv(100)
    return "sent"


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(name: str, fn: Case, client: Client, url: str, pid: int) -> tuple[float, float, float, str]:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = rss_mb(pid)
    health = url.removesuffix("/mcp") + "/healthz"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stop = Path(tmp) / "stop"
        probe = subprocess.Popen([sys.executable, "-c", PROBE, health, str(stop)], stdout=subprocess.PIPE, text=True)
        assert probe.stdout is not None
        assert probe.stdout.readline().strip() == "ready"
        with anyio.fail_after(120):
            try:
                outcome = await fn(client, url)
            except Exception as exc:  # the client side gave up: say so in the table
                outcome = f"client: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        stop.touch()
        worst = float(probe.communicate(timeout=70)[0])
    return elapsed, worst * 1000, peak_mb(pid) - before, outcome


PROBE = """
import pathlib, sys, time, httpx
health, stop = sys.argv[1], pathlib.Path(sys.argv[2])
worst = 0.0
with httpx.Client(timeout=60) as http:
    http.get(health)
    print("ready", flush=True)
    while not stop.exists():
        started = time.perf_counter()
        try:
            http.get(health)
        except httpx.HTTPError:
            pass
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.02)
print(worst)
"""
"""`/healthz` every 20 ms from a process of its own until the file `stop` exists; prints the longest wait."""


async def main(only: str | None) -> None:
    servers = (toml_table("servers.h", fixture_stdio("hostile_server"))
               + toml_table("servers.hd", {**fixture_stdio("hostile_server"), "mode": "direct"})
               + toml_table("limits", {"timeout_s": 5}))
    rows = []
    async with gateway(servers) as (url, pid), Client(url) as client:
        for name, (what, fn) in CASES.items():
            if only and name != only:
                continue
            seconds, stall_ms, growth, outcome = await measure(name, fn, client, url, pid)
            rows.append(f"| {name} | {what} | {seconds:.1f} | {stall_ms:.0f} | {growth:.0f} | {outcome[:60]} |")
    print(f"Python {sys.version.split()[0]}, 2 cores; cases run one after another in one gateway\n")
    print("| case | what | s | worst /healthz ms | peak RSS growth MiB | outcome |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES), help="run one case")
    anyio.run(main, parser.parse_args().only)
