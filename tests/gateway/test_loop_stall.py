"""A big result the gateway lets through (3.5 MB of small objects, under the 4 MiB caps) must not stall it.

While the gateway's event loop is busy with one call, every other caller waits: health checks,
other keys' calls, scripts' timeouts. The gateway runs as its own process with a task ticking
every 10 ms in its event loop (`tests/fixtures/ticked_gateway.py`); the longest gap between two
ticks during a call is how long the loop was held. The machine is shared and often loaded, so
the bound is relative to its speed at the time: what this process takes to `json.loads` the same
message, which the gateway also does in one go. Before results were converted in steps, a direct
call held the loop 3-5 times that long and a script call 10-15 times; now about once (the parse
itself, and the SDK client's validation of the result). A call gets `ATTEMPTS` tries, since a
burst of other load can hit any one of them. The gateway's memory is its own, and bounded too.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.fixtures.ticked_gateway import worst_gap_s
from tests.helpers import FIXTURES, free_port, text_of, wait_for_port

pytestmark = pytest.mark.anyio

MB = 3.5
STALL_FACTOR = 2.5
STALL_SLACK_S = 0.05
ATTEMPTS = 3
GROWTH_BOUND_MIB = 100


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _objects(mb: float) -> int:
    """How many objects the fixture's `objects(mb=...)` returns."""
    return int(mb * 1024 * 1024) // len('{"i":100000,"s":"x"},')


@dataclass
class Ticked:
    client: Client
    pid: int
    ticks: Path

    def status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)


@contextlib.asynccontextmanager
async def ticked_gateway(tmp: Path, servers: str, *warm: tuple[str, dict[str, Any]]) -> AsyncIterator[Ticked]:
    """`tests/fixtures/ticked_gateway.py` serving the `[servers.*]` tables in `servers`, a client connected, the
    `warm` calls made (so what is measured later is not a first call's start-up)."""
    port = free_port()
    config, ticks = tmp / "gw.toml", tmp / "ticks"
    config.write_text(f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp / "state"}"\n{servers}')
    serve = [sys.executable, str(FIXTURES / "ticked_gateway.py"), str(config), str(ticks)]
    proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_port(port, 60)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            for tool, arguments in warm:
                await client.call_tool(tool, arguments)
            yield Ticked(client, proc.pid, ticks)
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def held_about_a_parse(gw: Ticked, call: Callable[[], Awaitable[None]]) -> None:
    """`call` (a 3.5 MB result) holds the loop less than `STALL_FACTOR` parses of its message (+ slack) in one of
    `ATTEMPTS` tries, and each try grows the gateway less than `GROWTH_BOUND_MIB`."""
    tries = []
    for _ in range(ATTEMPTS):
        with contextlib.suppress(OSError):  # without clear_refs the peak is start-up's: a weaker check, not wrong
            Path(f"/proc/{gw.pid}/clear_refs").write_text("5")
        rss = gw.status_mib("VmRSS")
        parse_s = _parse_s()
        start = time.monotonic()
        await call()
        end = time.monotonic()
        await anyio.sleep(0.05)  # the tick that ends a stall at the very end is written by now
        growth = gw.status_mib("VmHWM") - rss
        assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"
        stall_s, bound = worst_gap_s(gw.ticks, start, end + 0.03), STALL_FACTOR * parse_s + STALL_SLACK_S
        tries.append(f"{stall_s * 1000:.0f} ms (parsing takes {parse_s * 1000:.0f} ms)")
        if stall_s < bound:
            return
    pytest.fail(f"the event loop was held for {', '.join(tries)}")


@pytest.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ticked]:
    hostile = FIXTURES / "hostile_server.py"
    servers = (f'[servers.s]\ncommand = "{sys.executable}"\nargs = ["{hostile}"]\n'
               f'[servers.ds]\ncommand = "{sys.executable}"\nargs = ["{hostile}"]\nmode = "direct"\n')
    async with ticked_gateway(tmp_path_factory.mktemp("loop-stall"), servers,  # both paths warm
                              ("executeToolCode", {"code": 'result = s.objects(mb=0.1, shape="structured")'}),
                              ("ds_objects", {"mb": 0.1, "shape": "structured"})) as ticked:
        yield ticked


def _parse_s() -> float:
    """What one `json.loads` of the upstream's message takes this machine now (the median of three)."""
    result = {"content": [], "structuredContent": {"items": [{"i": n, "s": "x"} for n in range(_objects(MB))]}}
    message = json.dumps({"jsonrpc": "2.0", "id": 9, "result": result}, separators=(",", ":")).encode()
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        json.loads(message)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def _call(gw: Ticked, way: str) -> None:
    count = _objects(MB)
    if way == "direct":
        out = await gw.client.call_tool("ds_objects", {"mb": MB, "shape": "structured"})
        assert out.structured_content is not None and len(out.structured_content["items"]) == count
    else:
        code = f'r = s.objects(mb={MB}, shape="structured")\nresult = [len(r["items"]), r["items"][-1]]'
        out = await gw.client.call_tool("executeToolCode", {"code": code})
        assert text_of(out) == f'result = [{count}, {{"i": {count - 1}, "s": "x"}}]', text_of(out)[:300]


@pytest.mark.parametrize("way", ["direct", "script"])
async def test_a_big_result_holds_the_event_loop_about_as_long_as_parsing_it(gw: Ticked, way: str) -> None:
    await held_about_a_parse(gw, lambda: _call(gw, way))


async def test_the_first_listing_of_a_big_catalog_does_not_hold_the_loop(tmp_path: Path) -> None:
    """The savings count of a Code Mode tools/list (tiktoken over every tool's definition, 0.2-0.4 s to load
    the encoding, ~0.2 s per 500 tools) ran on the event loop at each view's first listing: now in a thread."""
    port, catalogs = free_port(), ["google_docs", "google_drive", "github", "google_sheets", "firecrawl", "notion"]
    config, ticks = tmp_path / "gw.toml", tmp_path / "ticks"
    config.write_text(f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp_path / "state"}"\n' + "".join(
        f'[servers.{name}]\ncommand = "{sys.executable}"\n'
        f'args = ["{FIXTURES / "catalog_server.py"}", "{FIXTURES.parents[1] / "benchmarks" / "data" / name}.json"]\n'
        for name in catalogs))
    serve = [sys.executable, str(FIXTURES / "ticked_gateway.py"), str(config), str(ticks)]
    proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_port(port, 60)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            start = time.monotonic()
            listed = await client.list_tools()
            end = time.monotonic()
            assert {t.name for t in listed.tools} >= {"listToolFiles", "executeToolCode"}
            out = await client.call_tool("listToolFiles", {})
            assert all(name in text_of(out) for name in catalogs), text_of(out)[:300]
        await anyio.sleep(0.05)
        stall_s = worst_gap_s(ticks, start, end + 0.03)
        assert stall_s < 0.1, f"the event loop was held for {stall_s * 1000:.0f} ms"
    finally:
        proc.kill()
        proc.wait(timeout=10)
