"""The examples run as a user would run them, and say what their docs promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mcp_gateway.config_files import load_config
from tests.helpers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_embedding_in_process() -> None:
    out = run_example("embed_inprocess.py")
    assert "tools: listToolFiles, readToolFile, getToolDocs, executeToolCode" in out
    assert 'client: result = ["o-2"]' in out
    assert "direct api tools: 4" in out and "stub lines: 8" in out


def test_agent_loop_with_a_scripted_model() -> None:
    out = run_example("agent_loop.py")
    assert '-> executeToolCode: result = ["G-310", "K-510", "T-200"]' in out
    assert 'answer: Reorder these SKUs: ["G-310", "K-510", "T-200"]' in out


@pytest.mark.anyio
async def test_asgi_mount() -> None:
    from mcp import Client

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "asgi_mount.py"), "--port", str(port)], cwd=EXAMPLES,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_port(port, 30)
        async with httpx.AsyncClient() as http:
            home = await http.get(f"http://127.0.0.1:{port}/")
        async with Client(f"http://127.0.0.1:{port}/tools/mcp") as client:
            listing = await client.call_tool("listToolFiles", {})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "MCP gateway at /tools/mcp" in home.text
    assert "servers/inventory.pyi  (3 tools)" in listing.content[0].text  # type: ignore[union-attr]


def test_demo_and_team_configs_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_KEY", "w" * 20)
    monkeypatch.setenv("SALES_KEY", "s" * 20)
    demo = load_config(EXAMPLES / "demo" / "gateway.toml")
    teams = load_config(EXAMPLES / "teams" / "gateway.toml")
    assert set(demo.servers) == {"inventory", "orders", "clock"}
    assert teams.teams["sales"].groups == ["orders_read", "stock_read"]


def test_connect_prints_client_setup(tmp_path: Path) -> None:
    def cli(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "mcp_gateway.cli", *args], capture_output=True, text=True,
                              timeout=30, check=True, cwd=tmp_path).stdout

    assert cli("connect", "claude", "--key", "k123").strip() == (
        'claude mcp add --transport http gw http://127.0.0.1:8080/mcp --header "Authorization: Bearer k123"'
    )
    assert 'bearer_token_env_var = "MCP_GATEWAY_KEY"' in cli("connect", "codex", "--key", "k")
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {"my-time": {"command": "mcp-server-time"}}}')
    subprocess.run([sys.executable, "-m", "mcp_gateway.cli", "init", "--import", ".mcp.json"], cwd=tmp_path,
                   check=True, timeout=30, capture_output=True)
    config = load_config(tmp_path / "gateway.toml")
    assert config.servers["my_time"].command == "mcp-server-time"
    again = subprocess.run([sys.executable, "-m", "mcp_gateway.cli", "init"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=30)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
