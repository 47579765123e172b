"""Upstream faults: crashes, crash loops, restarts, hangs and changing tool lists, with real processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client

from mcp_gateway import Gateway, call
from tests.helpers import (
    FIXTURES,
    eventually,
    free_port,
    key_client,
    make_config,
    serve_gateway,
    stdio,
    text_of,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

FAST = {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, "health_interval_s": 0}


@contextlib.contextmanager
def process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_a_crashed_stdio_upstream_is_restarted_and_the_others_never_leave() -> None:
    cfg = make_config({"math": stdio("math_server"), "text": stdio("text_server")}, gateway=FAST)
    async with Gateway(cfg) as gw:
        crashed = await call(gw, "executeToolCode", {"code": "result = math.Crash()"})
        assert crashed.is_error and "math.Crash" in text_of(crashed)
        meanwhile = await call(gw, "executeToolCode", {"code": 'result = text.upper(text="still here")'})
        assert "STILL HERE" in text_of(meanwhile)

        async def math_is_back() -> bool:
            out = await call(gw, "executeToolCode", {"code": "result = math.add(a=2, b=3)"})
            return not out.is_error and "result = 5" in text_of(out)

        await eventually(math_is_back)
        assert gw.upstream("math").state == "ready" and gw.upstream("text").state == "ready"


async def test_a_crash_loop_is_retried_with_backoff_not_in_a_tight_loop() -> None:
    starts = Path(tempfile.mkdtemp()) / "starts"
    crasher = {"command": sys.executable, "args": ["-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(1)"]}
    cfg = make_config({"bad": crasher, "math": stdio("math_server")},
                      gateway={"reconnect_initial_s": 0.1, "reconnect_max_s": 1.0, "startup_timeout_s": 5})
    async with Gateway(cfg) as gw:
        await anyio.sleep(3.0)
        listing = text_of(await call(gw, "listToolFiles", {}))
        added = await call(gw, "executeToolCode", {"code": "result = math.add(a=1, b=1)"})
    attempts = len(starts.read_text())
    # Delays of 0.1, 0.2, 0.4, 0.8, 1, 1 s (each times 0.5-1 for jitter) fit 4-10 starts into 3 s.
    assert 3 <= attempts <= 12, attempts
    assert "bad" in listing and "retry" in listing
    assert not added.is_error


async def test_an_http_upstream_restarted_gets_a_fresh_session_and_the_call_is_retried() -> None:
    port = free_port()
    script = str(FIXTURES / "conformance_server.py")
    cfg = make_config({"up": {"url": f"http://127.0.0.1:{port}/mcp", "mode": "direct"}},
                      gateway={**FAST, "prefix_direct_tools": False})
    with process(script, "http", str(port), "--legacy") as first:
        await wait_for_port(port)
        async with Gateway(cfg) as gw:
            before = await call(gw, "test_simple_text", {})
            assert not before.is_error, text_of(before)
            first.kill()
            first.wait(timeout=10)
            with process(script, "http", str(port), "--legacy"):
                await wait_for_port(port)
                after = await call(gw, "test_simple_text", {})
                assert not after.is_error, text_of(after)
                assert text_of(after) == text_of(before)


@pytest.mark.parametrize(("fixture", "era", "code", "expected"), [
    ("math_server.py", "2026-07-28", "result = up.add(a=40, b=2)", "result = 42"),  # checked with tools/list
    ("conformance_server.py --legacy", "2025-11-25", "result = up.test_simple_text()", "This is a simple"),  # ping
])
async def test_a_dead_http_upstream_is_noticed_by_the_health_check_and_reconnected(
    fixture: str, era: str, code: str, expected: str
) -> None:
    port = free_port()
    script, *extra = fixture.split()
    args = (str(FIXTURES / script), "http", str(port), *extra)
    cfg = make_config({"up": {"url": f"http://127.0.0.1:{port}/mcp"}}, gateway={**FAST, "health_interval_s": 0.3})
    with process(*args) as first:
        await wait_for_port(port)
        async with Gateway(cfg) as gw:
            up = gw.upstream("up")
            assert up.state == "ready" and up.client is not None and up.client.protocol_version == era
            first.kill()
            first.wait(timeout=10)

            await eventually(lambda: up.state == "failed")
            assert gw.catalog.code_refs() == [] and not up.tools
            with process(*args):
                await wait_for_port(port)

                await eventually(lambda: up.state == "ready" and bool(up.tools))
                out = await call(gw, "executeToolCode", {"code": code})
                assert expected in text_of(out), text_of(out)


async def test_a_hung_upstream_does_not_block_calls_to_another() -> None:
    cfg = make_config({"math": stdio("math_server", timeout_s=20), "text": stdio("text_server")})
    async with Gateway(cfg) as gw, anyio.create_task_group() as tg:
        tg.start_soon(call, gw, "executeToolCode", {"code": "result = math.slow(seconds=10)"})
        await anyio.sleep(0.3)
        with anyio.fail_after(2):
            out = await call(gw, "executeToolCode", {"code": 'result = text.upper(text="quick")'})
        assert "QUICK" in text_of(out)
        tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def watching(url: str, key: str, seen: list[str]) -> AsyncIterator[Client]:
    """A handshake-era client that records the `list_changed` notifications it receives."""

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            seen.append("tools")
        elif isinstance(message, types.ResourceListChangedNotification):
            seen.append("resources")

    async with key_client(url, key, mode="legacy", message_handler=on_message) as client:
        yield client


async def test_an_upstream_tool_change_reaches_only_the_clients_whose_view_changed() -> None:
    port = free_port()
    cfg = make_config(
        {"changing": {"url": f"http://127.0.0.1:{port}/mcp", "mode": "direct"}},
        gateway={"prefix_direct_tools": False},
        groups={"all": {"tools": ["changing.*"]}, "growers": {"tools": ["changing.grow"]}},
        keys={"wide": {"key": "wide-key-0123456789", "groups": ["all"]},
              "narrow": {"key": "narrow-key-012345678", "groups": ["growers"]}},
    )
    with process(str(FIXTURES / "changing_server.py"), "http", str(port)):
        await wait_for_port(port)
        wide_seen: list[str] = []
        narrow_seen: list[str] = []
        async with (
            serve_gateway(Gateway(cfg)) as url,
            watching(url, "wide-key-0123456789", wide_seen) as wide,
            watching(url, "narrow-key-012345678", narrow_seen) as narrow,
        ):
            assert {t.name for t in (await wide.list_tools()).tools} == {"grow", "shrink", "add_note"}
            assert {t.name for t in (await narrow.list_tools()).tools} == {"grow"}
            assert text_of(await narrow.call_tool("grow", {"name": "extra"})) == "added extra"

            await eventually(lambda: bool(wide_seen))
            assert wide_seen == ["tools"]
            assert {t.name for t in (await wide.list_tools()).tools} == {"grow", "shrink", "add_note", "extra"}
            assert text_of(await wide.call_tool("extra", {})) == "hello from extra"
            await anyio.sleep(0.3)
            assert narrow_seen == []
            assert {t.name for t in (await narrow.list_tools()).tools} == {"grow"}


async def test_a_2026_client_listening_for_changes_is_told_when_its_tools_or_resources_change() -> None:
    port = free_port()
    cfg = make_config({"changing": {"url": f"http://127.0.0.1:{port}/mcp", "mode": "direct"}},
                      gateway={"prefix_direct_tools": False})
    with process(str(FIXTURES / "changing_server.py"), "http", str(port)):
        await wait_for_port(port)
        async with serve_gateway(Gateway(cfg)) as url, Client(url) as client:
            assert client.protocol_version == "2026-07-28"
            async with client.listen(tools_list_changed=True, resources_list_changed=True) as subscription:
                await client.call_tool("grow", {"name": "later"})
                with anyio.fail_after(10):
                    event = await subscription.__anext__()
                await client.call_tool("add_note", {"name": "b"})
                with anyio.fail_after(10):
                    resources_event = await subscription.__anext__()
            assert type(event).__name__ == "ToolsListChanged"
            assert type(resources_event).__name__ == "ResourcesListChanged"
            assert "later" in {t.name for t in (await client.list_tools()).tools}


GARBAGE = "import sys\nfor line in sys.stdin:\n    print('<html>this is not JSON-RPC</html>', flush=True)\n"


async def test_an_upstream_that_answers_garbage_fails_clearly_and_is_retried() -> None:
    garbage = {"command": sys.executable, "args": ["-c", GARBAGE]}
    cfg = make_config({"junk": garbage, "text": stdio("text_server")},
                      gateway={"connect_timeout_s": 1.5, "reconnect_initial_s": 5, "startup_timeout_s": 5})
    async with Gateway(cfg) as gw:
        listing = text_of(await call(gw, "listToolFiles", {}))
        junk = await call(gw, "executeToolCode", {"code": "result = junk.anything()"})
        fine = await call(gw, "executeToolCode", {"code": 'result = text.upper(text="ok")'})
    assert "servers/junk.pyi  (unavailable: `python" in listing  # the command, what it did, what to do
    assert "wrote something that is not MCP on stdout (" in listing and "only JSON-RPC there" in listing
    assert junk.is_error and "junk" in text_of(junk)
    assert "OK" in text_of(fine)


async def test_an_upstream_slow_to_start_is_served_once_it_is_up() -> None:
    math_server = str(FIXTURES / "math_server.py")
    late = f"import time, runpy; time.sleep(2); runpy.run_path({math_server!r}, run_name='__main__')"
    cfg = make_config({"late": {"command": sys.executable, "args": ["-c", late]}, "text": stdio("text_server")},
                      gateway={"startup_timeout_s": 0.5})
    async with Gateway(cfg) as gw:
        early = text_of(await call(gw, "listToolFiles", {}))
        assert "servers/late.pyi  (unavailable: connecting)" in early, early

        async def late_answers() -> bool:
            out = await call(gw, "executeToolCode", {"code": "result = late.add(a=1, b=1)"})
            return "result = 2" in text_of(out)

        await eventually(late_answers)


async def test_an_upstream_resource_change_reaches_the_clients_that_may_see_that_server() -> None:
    port = free_port()
    cfg = make_config(
        {"changing": {"url": f"http://127.0.0.1:{port}/mcp", "mode": "direct"}, "text": stdio("text_server")},
        gateway={"prefix_direct_tools": False},
        groups={"all": {"tools": ["changing.*"]}, "texts": {"tools": ["text.*"]}},
        keys={"wide": {"key": "wide-key-0123456789", "groups": ["all"]},
              "outsider": {"key": "outsider-key-0123456", "groups": ["texts"]}},
    )
    with process(str(FIXTURES / "changing_server.py"), "http", str(port)):
        await wait_for_port(port)
        wide_seen: list[str] = []
        outsider_seen: list[str] = []
        async with (
            serve_gateway(Gateway(cfg)) as url,
            watching(url, "wide-key-0123456789", wide_seen) as wide,
            watching(url, "outsider-key-0123456", outsider_seen) as outsider,
        ):
            assert (await wide.list_resources()).resources == []
            assert (await outsider.list_resources()).resources == []
            assert text_of(await wide.call_tool("add_note", {"name": "a"})) == "noted a"

            await eventually(lambda: "resources" in wide_seen)
            assert [r.uri for r in (await wide.list_resources()).resources] == ["note://a"]
            await anyio.sleep(0.3)
            assert outsider_seen == []
            assert (await outsider.list_resources()).resources == []
