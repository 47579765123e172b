"""The audit log misses nothing: refused calls, calls cut short by `kill -9`, and no call it cannot record."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_gateway import Gateway
from mcp_gateway.storage import AuditRow, SQLiteStorage
from tests.helpers import eventually, free_port, make_config, serve_gateway, stdio, text_of, wait_for_port

pytestmark = pytest.mark.anyio


async def test_a_refused_direct_call_leaves_a_row() -> None:
    gw = Gateway(make_config({"math": stdio("math_server", mode="direct")}))
    async with serve_gateway(gw) as url, Client(url) as client:
        out = await client.call_tool("math_nosuch", {"x": 1})
    assert out.is_error and "unknown tool math_nosuch" in text_of(out)
    [row] = [r for r in await gw.storage.query_audit() if r.kind == "tool"]
    assert (row.server, row.tool, row.outcome) == (None, "math_nosuch", "UnknownTool")
    assert row.error is not None and "unknown tool" in row.error


async def test_a_call_cut_short_by_kill_9_is_on_record_as_started(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gw.toml"
    server = stdio("math_server", mode="direct")
    config.write_text(f'[gateway]\nanonymous = true\nstate_dir = "{tmp_path / "state"}"\n[servers.math]\n'
                      + "".join(f"{k} = {json.dumps(v)}\n" for k, v in server.items()))
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = SQLiteStorage(tmp_path / "state" / "gateway.db")

    async def rows() -> list[AuditRow]:
        return [r for r in await storage.query_audit() if r.tool == "slow"]

    async def call_and_lose_the_gateway() -> None:
        with contextlib.suppress(Exception):
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                await client.call_tool("math_slow", {"seconds": 30})

    try:
        await wait_for_port(port, 30)
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_and_lose_the_gateway)
            await eventually(rows, 15)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            tg.cancel_scope.cancel()
        [row] = await rows()
        assert row.outcome == "started" and row.key == "local"
    finally:
        proc.kill()
        await storage.close()


async def test_a_call_the_audit_log_cannot_record_is_not_made(tmp_path: Path) -> None:
    gw = Gateway(make_config({"math": stdio("math_server", mode="direct")}, gateway={"state_dir": str(tmp_path)}))
    async with serve_gateway(gw) as url, Client(url) as client:
        assert not (await client.call_tool("math_add", {"a": 1, "b": 1})).is_error
        locker = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the database: writes wait, then fail
        try:
            out = await client.call_tool("math_echo", {"text": "must not run"})
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    assert out.is_error and "was not called: the audit log cannot be written" in text_of(out)
    assert [r.tool for r in await gw.storage.query_audit() if r.kind == "tool"] == ["add"]


async def test_logs_shows_control_and_bidi_characters_escaped(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[gateway]\n", encoding="utf-8")
    storage = SQLiteStorage(tmp_path / ".mcp-gateway" / "gateway.db")
    forged = "read\r\n2026-01-01 00:00:00  admin  x  \x1b[32mok\x1b[0m \u202eevil"
    await storage.write_audit(AuditRow(key="k", team=None, endpoint="/mcp", kind="resource", server="s", tool=forged,
                                       outcome="ok", latency_ms=1.0))
    await storage.close()
    for extra in ([], ["--json"]):
        out = subprocess.run([sys.executable, "-m", "mcp_gateway.cli", "logs", "--config", str(config), *extra],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert "\x1b" not in out and "\r" not in out and "\u202e" not in out, extra
        assert len(out.strip().splitlines()) == (1 if extra else 3), out
    stored = SQLiteStorage(tmp_path / ".mcp-gateway" / "gateway.db")
    assert (await stored.query_audit())[0].tool == forged, "the raw value is kept"
    await stored.close()
