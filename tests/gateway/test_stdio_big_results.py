"""Served over stdio (`serve --stdio`), big structured content arrives whole, without holding the event loop long.

The gateway runs as `tests/fixtures/ticked_gateway.py --stdio` (`serve --stdio` with a task ticking
every 10 ms in its event loop, which also writes stray output to fd 1 once serving has claimed it)
under a real SDK client; its upstream is `tests/fixtures/hostile_server.py` over stdio in direct
mode. The loop-stall bound is test_loop_stall's, relative to the machine's speed at the time: over
stdio the SDK's server handles the answer in two steps (its check of the result, ~45 ms for 3.5 MB,
and its dump of the line, ~25 ms), each shorter than parsing the upstream's message. The SDK's
transport keeps fd 1 off the wire while it serves: stray writes must land on stderr (re-check on
SDK upgrades).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.fixtures.ticked_gateway import STRAYS, worst_gap_s
from tests.gateway.test_loop_stall import ATTEMPTS, MB, STALL_FACTOR, STALL_SLACK_S, _parse_s
from tests.helpers import FIXTURES, eventually, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _items(mb: float) -> dict[str, Any]:
    """The structured content of the fixture's `objects(mb=..., shape="structured")`."""
    count = int(mb * 1024 * 1024) // len('{"i":100000,"s":"x"},')
    return {"items": [{"i": n, "s": "x"} for n in range(count)]}


@dataclass
class Stdio:
    client: Client
    ticks: Path
    stderr: Path


@pytest.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stdio]:
    tmp = tmp_path_factory.mktemp("stdio-big-results")
    config, ticks, stderr = tmp / "gw.toml", tmp / "ticks", tmp / "stderr"
    config.write_text(
        f'[gateway]\nstate_dir = "{tmp / "state"}"\n'
        f'[servers.ds]\ncommand = "{sys.executable}"\nargs = ["{FIXTURES / "hostile_server.py"}"]\nmode = "direct"\n'
    )
    serve = StdioServerParameters(
        command=sys.executable, args=[str(FIXTURES / "ticked_gateway.py"), str(config), str(ticks), "--stdio"]
    )
    with stderr.open("w") as errlog:
        async with Client(stdio_client(serve, errlog=errlog)) as client:
            await client.call_tool("ds_objects", {"mb": 0.1, "shape": "structured"})  # warm
            yield Stdio(client, ticks, stderr)


async def test_big_structured_content_arrives_as_the_upstream_sent_it(gw: Stdio) -> None:
    out = await gw.client.call_tool("ds_objects", {"mb": MB, "shape": "structured"})
    assert not out.is_error
    assert out.structured_content == _items(MB)


async def test_small_results_are_unaffected(gw: Stdio) -> None:
    out = await gw.client.call_tool("ds_objects", {"mb": 0.01, "shape": "structured"})
    assert out.structured_content == _items(0.01)
    assert text_of(await gw.client.call_tool("ds_ping", {})) == "pong"


async def test_stray_output_on_fd_1_goes_to_stderr_not_the_wire(gw: Stdio) -> None:
    await eventually(lambda: all(stray in gw.stderr.read_text() for stray in STRAYS))  # each write lands once
    assert text_of(await gw.client.call_tool("ds_ping", {})) == "pong"


async def test_a_big_result_holds_the_event_loop_about_as_long_as_parsing_it(gw: Stdio) -> None:
    tries = []
    for _ in range(ATTEMPTS):
        parse_s = _parse_s()
        start = time.monotonic()
        out = await gw.client.call_tool("ds_objects", {"mb": MB, "shape": "structured"})
        end = time.monotonic()
        assert out.structured_content is not None and len(out.structured_content["items"]) == len(_items(MB)["items"])
        await anyio.sleep(0.05)  # the tick that ends a stall at the very end is written by now
        stall_s, bound = worst_gap_s(gw.ticks, start, end + 0.03), STALL_FACTOR * parse_s + STALL_SLACK_S
        tries.append(f"{stall_s * 1000:.0f} ms (parsing takes {parse_s * 1000:.0f} ms)")
        if stall_s < bound:
            return
    pytest.fail(f"the event loop was held for {', '.join(tries)}")
