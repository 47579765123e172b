"""How long one big-but-allowed tool result stalls the gateway's event loop, against a baseline, in one run.

A 3.5 MB result of ~170,000 small objects (under the 4 MiB caps) is the case: every other caller
of the gateway (health checks, other keys' calls, scripts' timeouts) waits while the event loop
is busy with it. Each gateway runs as its own process with a task that ticks every 10 ms; the
longest gap between two ticks during a call is that call's stall. Peak RSS growth is the
gateway's VmHWM (reset before each call) minus its RSS before the call; the worst of a case is
mostly its first big call, which grows a fresh heap. The `output schema` cases call a tool that
declares one (`tests/fixtures/typed_server.py`), whose result is checked against it.

The baseline is the same code at another git revision (`--against`, default HEAD: name the commit
before a change once it is committed), unpacked
with `git archive` to a temporary directory and put first on the gateway's PYTHONPATH; the
current tree is the working directory. The two gateways take turns, call by call.

    .venv/bin/python benchmarks/big_results.py [--against REV] [--repeat N] [--mb 3.5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import FIXTURES, fixture_server, fixture_stdio, free_port, process, rss_mb, toml_table, wait_for_port  # noqa: E402

TICK_S = 0.01
"""The ticker's period (`tests/fixtures/ticked_gateway.py`, which writes each gap of 15 ms or more to a file)."""


@dataclass
class Served:
    """One gateway process: its URL, pid and the file its ticker writes gaps to."""

    name: str
    url: str
    pid: int
    ticks: Path

    def worst_gap_ms(self, start: float, end: float) -> float:
        """The longest tick gap that ended within [start, end] (monotonic seconds), at least one tick."""
        worst = TICK_S
        for line in self.ticks.read_text().splitlines():
            at, gap = (float(x) for x in line.split())
            if start <= at <= end:
                worst = max(worst, gap)
        return worst * 1000

    def status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return 0.0


@dataclass
class Samples:
    stall_ms: list[float] = field(default_factory=list)
    call_ms: list[float] = field(default_factory=list)
    growth_mib: list[float] = field(default_factory=list)


class LegacyClient:
    """A 2025-11-25 client over plain HTTP (the SDK's own refuses SSE events over 1 MiB, as a big result is one)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=120)
        self.headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        self.next_id = 0

    async def __aenter__(self) -> LegacyClient:
        await self._request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                           "clientInfo": {"name": "bench", "version": "1"}})
        await self.http.post(self.url, headers=self.headers,
                             json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        return types.CallToolResult.model_validate(await self._request("tools/call", {"name": name,
                                                                                       "arguments": arguments}))

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        response = await self.http.post(self.url, headers=self.headers, json=body)
        response.raise_for_status()
        if "mcp-session-id" in response.headers:
            self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
        texts = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")] or [response.text]
        for text in texts:
            message = json.loads(text)
            if message.get("id") == self.next_id:
                return message["result"]  # type: ignore[no-any-return]
        raise RuntimeError(f"no answer to {method}: {response.text[:300]}")


Caller = Client | LegacyClient
Case = Callable[[Caller, float], Awaitable[None]]


def _objects(mb: float) -> int:
    """How many objects the fixture's `objects(mb=...)` returns."""
    return int(mb * 1024 * 1024) // len('{"i":100000,"s":"x"},')


def _direct(server: str, shape: bool = True) -> Case:
    """`shape`: the tool takes `shape` (hostile_server's; typed_server's returns structured content only)."""
    async def call(client: Caller, mb: float) -> None:
        out = await client.call_tool(f"{server}_objects", {"mb": mb, **({"shape": "structured"} if shape else {})})
        assert not out.is_error and out.structured_content is not None, str(out)[:300]
        assert len(out.structured_content["items"]) == _objects(mb), str(out.structured_content)[:300]
    return call


def _script(server: str, shape: bool = True) -> Case:
    async def call(client: Caller, mb: float) -> None:
        shaped = ', shape="structured"' if shape else ""
        code = f'r = {server}.objects(mb={mb}{shaped})\nresult = [len(r["items"]), r["items"][-1]]'
        out = await client.call_tool("executeToolCode", {"code": code})
        last = {"i": _objects(mb) - 1, "s": "x"}
        assert not out.is_error and json.dumps([_objects(mb), last]) in str(out.content[0]), str(out)[:300]
    return call


async def measure(served: Served, client: Caller, case: Case, mb: float, into: Samples) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{served.pid}/clear_refs").write_text("5")  # VmHWM back to the current RSS
    before = rss_mb(served.pid)
    start = time.monotonic()
    await case(client, mb)
    end = time.monotonic()
    await anyio.sleep(0.05)  # the tick that ends a stall at the very end is written by now
    into.stall_ms.append(served.worst_gap_ms(start, end + 0.03))
    into.call_ms.append((end - start) * 1000)
    into.growth_mib.append(served.status_mib("VmHWM") - before)


@contextlib.asynccontextmanager
async def serve(name: str, tree: Path, servers: str, tmp: Path) -> AsyncIterator[Served]:
    """A gateway from the source tree `tree`, with the ticker, on a free port."""
    port = free_port()
    state = tmp / name
    state.mkdir()
    config = state / "gw.toml"
    config.write_text(toml_table("gateway", {"state_dir": str(state / "state"), "port": port, "anonymous": True})
                      + servers)
    ticks = state / "ticks"
    ticks.touch()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(FIXTURES / "ticked_gateway.py"), str(config), str(ticks)]
    if os.environ.get("BIG_RESULTS_PROFILE"):  # cProfile stats of each gateway, to this path and its name
        command.append(f"{os.environ['BIG_RESULTS_PROFILE']}.{name}")
    with process(command, stop_s=20, env=env, cwd=state) as proc:
        with anyio.fail_after(60):
            while proc.poll() is None:
                with contextlib.suppress(TimeoutError):
                    await wait_for_port(port, 0.5)
                    break
        if proc.poll() is not None:
            raise SystemExit(f"the {name} gateway exited with {proc.returncode}")
        yield Served(name, f"http://127.0.0.1:{port}/mcp", proc.pid, ticks)


def baseline_tree(rev: str, into: Path) -> Path:
    """`mcp_gateway` and `sandbox` as they are at `rev`, unpacked under `into` (read from git; nothing changes)."""
    tree = into / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "mcp_gateway", "sandbox"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


async def main(rev: str, repeat: int, mb: float, only: str | None) -> None:
    async with fixture_server("hostile_server") as http_url:
        servers = (toml_table("servers.s", fixture_stdio("hostile_server"))
                   + toml_table("servers.ds", {**fixture_stdio("hostile_server"), "mode": "direct"})
                   + toml_table("servers.dh", {"url": http_url, "mode": "direct"})
                   + toml_table("servers.t", fixture_stdio("typed_server"))  # its tools declare an outputSchema
                   + toml_table("servers.dt", {**fixture_stdio("typed_server"), "mode": "direct"}))
        cases: dict[str, tuple[str, str, Case]] = {
            "direct-stdio": ("direct call, stdio upstream", "modern", _direct("ds")),
            "direct-http": ("direct call, streamable HTTP upstream", "modern", _direct("dh")),
            "direct-legacy": ("direct call, stdio upstream, 2025-11-25 client", "legacy", _direct("ds")),
            "script-stdio": ("script call, stdio upstream", "modern", _script("s")),
            "script-legacy": ("script call, stdio upstream, 2025-11-25 client", "legacy", _script("s")),
            "direct-typed": ("direct call, stdio upstream, output schema", "modern", _direct("dt", shape=False)),
            "script-typed": ("script call, stdio upstream, output schema", "modern", _script("t", shape=False)),
        }
        if only:
            cases = {only: cases[only]}
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            trees = {"before": baseline_tree(rev, tmp), "after": ROOT}
            results: dict[tuple[str, str], Samples] = {}
            async with contextlib.AsyncExitStack() as stack:
                gateways: dict[str, tuple[Served, dict[str, Caller]]] = {}
                for label, tree in trees.items():
                    served = await stack.enter_async_context(serve(label, tree, servers, tmp))
                    clients: dict[str, Caller] = {
                        "modern": await stack.enter_async_context(Client(served.url)),
                        "legacy": await stack.enter_async_context(LegacyClient(served.url))}
                    for _, protocol, case in cases.values():  # warm: upstreams up, a worker started, code imported
                        await case(clients[protocol], 0.05)
                    gateways[label] = (served, clients)
                for _ in range(repeat):
                    for name, (_, protocol, case) in cases.items():
                        for label, (served, clients) in gateways.items():
                            await measure(served, clients[protocol], case, mb,
                                          results.setdefault((name, label), Samples()))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; {mb} MB of small objects per call; "
          f"median of {repeat} calls (worst in brackets); before = {rev}, after = working tree\n")
    print("| case | stall ms before | stall ms after | call ms before | call ms after "
          "| peak RSS MiB before | peak RSS MiB after |\n|---|---|---|---|---|---|---|")
    for name, (what, _, _) in cases.items():
        b, a = results[(name, "before")], results[(name, "after")]
        print(f"| {what} | {_cell(b.stall_ms)} | {_cell(a.stall_ms)} | {_cell(b.call_ms)} | {_cell(a.call_ms)} "
              f"| {_cell(b.growth_mib)} | {_cell(a.growth_mib)} |")


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({max(values):.0f})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision of the baseline (default HEAD)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=float, default=3.5)
    parser.add_argument("--only", help="one case: direct-stdio, direct-http, direct-legacy, script-stdio, "
                        "script-legacy, direct-typed, script-typed")
    options = parser.parse_args()
    anyio.run(main, options.against, options.repeat, options.mb, options.only)
