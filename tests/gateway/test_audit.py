"""The audit log loses nothing that was answered: under concurrent load, and after `kill -9`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_gateway.storage import SQLiteStorage
from tests.helpers import free_port, stdio, wait_for_port

pytestmark = pytest.mark.anyio


async def test_rows_for_every_answered_call_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gw.toml"
    server = stdio("math_server", mode="direct")
    config.write_text(
        f'[gateway]\nanonymous = true\nstate_dir = "{tmp_path / "state"}"\n[servers.math]\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in server.items())
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    answered = 0
    try:
        await wait_for_port(port, 30)

        async def client(n: int) -> None:
            nonlocal answered
            async with Client(f"http://127.0.0.1:{port}/mcp") as c:
                for i in range(n):
                    result = await c.call_tool("math_add", {"a": i, "b": 1})
                    assert result.structured_content == {"result": i + 1}
                    answered += 1

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(client, 15)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    storage = SQLiteStorage(tmp_path / "state" / "gateway.db")
    try:
        rows = [r for r in await storage.query_audit(limit=10000) if r.kind == "tool"]
    finally:
        await storage.close()
    assert answered == 60
    assert len(rows) == answered
    assert all(r.tool == "add" and r.outcome == "ok" and r.key == "local" for r in rows)


async def test_metrics_count_calls_scripts_and_savings() -> None:
    import httpx

    from mcp_gateway import Gateway
    from tests.helpers import make_config, serve_gateway, text_of

    gw = Gateway(make_config({"math": stdio("math_server"), "d": stdio("text_server", mode="direct")}))
    async with serve_gateway(gw) as url, Client(url) as client:
        await client.list_tools()
        out = await client.call_tool("executeToolCode", {"code": "result = math.add(a=1, b=2)"})
        await client.call_tool("executeToolCode", {"code": "x = ("})
        await client.call_tool("d_upper", {"text": "a"})
        async with httpx.AsyncClient() as http:
            text = (await http.get(url.removesuffix("/mcp") + "/metrics")).text
    assert text_of(out) == "result = 3"
    assert 'mcp_gateway_tool_calls_total{outcome="ok",server="math",tool="add",via="script"} 1.0' in text
    assert 'mcp_gateway_tool_calls_total{outcome="ok",server="d",tool="upper",via="direct"} 1.0' in text
    assert 'mcp_gateway_script_runs_total{outcome="ok"} 1.0' in text
    assert 'mcp_gateway_script_runs_total{outcome="syntax"} 1.0' in text
    assert 'mcp_gateway_upstream_up{server="math"} 1.0' in text
    saved = next(line for line in text.splitlines() if line.startswith("mcp_gateway_tokens_saved_total"))
    assert float(saved.split()[-1]) > 0
