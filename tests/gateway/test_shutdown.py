"""Graceful shutdown of a served gateway: in-flight calls end, upstream children do not outlive it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from tests.helpers import FIXTURES, eventually, free_port, wait_for_port

pytestmark = pytest.mark.anyio


def _children(pid: int) -> set[int]:
    """Every descendant of `pid`, read from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            kids = {int(k) for k in task.read_text().split()}
            todo.extend(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def _initialize(http: httpx.AsyncClient) -> dict[str, str]:
    """A handshake-era session by hand: the SDK client tears itself down when its server goes away."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
    answer = await http.post("/mcp", json=init, headers=HEADERS)
    headers = {**HEADERS, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


async def _call(http: httpx.AsyncClient, headers: dict[str, str], code: str) -> str:
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "executeToolCode", "arguments": {"code": code}}}
    async with http.stream("POST", "/mcp", json=call, headers=headers) as response:
        return (await response.aread()).decode()


async def _terminate_soon(gateway: subprocess.Popen[bytes]) -> None:
    await anyio.sleep(0.5)
    gateway.send_signal(signal.SIGTERM)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
async def test_sigterm_finishes_the_call_in_flight_and_leaves_no_children(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp_path / "state"}"\nshutdown_grace_s = 10\n'
        f'[servers.math]\ncommand = "{sys.executable}"\nargs = ["{FIXTURES / "math_server.py"}"]\n'
    )
    gateway = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(cfg)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_port(port)
        children = _children(gateway.pid)
        assert children, "the stdio upstream should be a child of the gateway"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            session = await _initialize(http)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_terminate_soon, gateway)
                body = await _call(http, session, "result = math.slow(seconds=1.5)")
        assert '"result = \\"slept 1.5\\""' in body, body
        started = time.monotonic()
        gateway.wait(timeout=20)
        assert time.monotonic() - started < 15
        with contextlib.suppress(TimeoutError):  # the assertion below names any that are left
            await eventually(lambda: not any(_alive(c) for c in children), 5)
        assert not [c for c in children if _alive(c)]
    finally:
        gateway.kill()
        gateway.wait(timeout=10)
