"""Serving: both protocol eras over HTTP, stdio serving, `check`, and a dead upstream beside live ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers import FIXTURES, gateway_client, make_config, stdio, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_both_protocol_eras(mode: str) -> None:
    async with gateway_client(make_config({"math": stdio("math_server")}), mode=mode) as client:
        out = await client.call_tool("executeToolCode", {"code": "result = math.add(a=20, b=22)"})
        assert client.server_capabilities.tools is not None
    assert text_of(out) == "result = 42"


def _toml(path: Path, servers: dict[str, dict[str, object]]) -> Path:
    lines = []
    for name, spec in servers.items():
        lines.append(f"[servers.{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in spec.items())
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_stdio_serving_with_mcp_json(tmp_path: Path) -> None:
    cfg = tmp_path / ".mcp.json"
    cfg.write_text(json.dumps({"mcpServers": {"math-tools": stdio("math_server")}}))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_gateway.cli", "serve", "--stdio", "--config", str(cfg)]
    )
    async with Client(params) as client:
        listing = text_of(await client.call_tool("listToolFiles", {}))
        out = await client.call_tool("executeToolCode", {"code": "result = math_tools.add(a=1, b=1)"})
    assert "servers/math_tools.pyi" in listing
    assert text_of(out) == "result = 2"


def test_check_prints_a_table_and_fails_on_a_dead_upstream(tmp_path: Path) -> None:
    cfg = _toml(
        tmp_path / "gw.toml",
        {
            "math": stdio("math_server"),
            "dead": {"command": sys.executable, "args": ["-c", "raise SystemExit(1)"]},
        },
    )
    run = subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", "check", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1, run.stderr
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.strip()}
    assert rows["math"][1:3] == ["stdio", "code"] and rows["math"][3] == "ok"
    assert int(rows["math"][4]) == 10 and int(rows["math"][5]) > 100
    assert rows["dead"][3] == "failed:"
    assert "not ready: dead" in run.stderr
    classic, sent = re.search(r"per request: (\d+) tokens with every tool listed; (\d+) with this", run.stdout).groups()
    assert int(classic) == int(rows["math"][5]) and 500 < int(sent) < 650  # the four meta-tools


def test_check_exits_0_when_every_upstream_is_ready(tmp_path: Path) -> None:
    cfg = _toml(tmp_path / "gw.toml", {"math": stdio("math_server", mode="direct")})
    run = subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", "check", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "with every tool listed" in run.stdout and "not ready" not in run.stderr


def test_bad_config_exits_2_with_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[servers.a]\ncommand = "x"\nmood = "happy"\n')
    run = subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", "check", "--config", str(cfg)],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 2
    assert "servers.a.mood (line 3): unknown key" in run.stderr


async def test_healthz_and_dns_rebinding_protection() -> None:
    from mcp_gateway import Gateway
    from tests.helpers import serve_gateway

    async with serve_gateway(Gateway(make_config({"math": stdio("math_server")}))) as url:
        base = url.removesuffix("/mcp")
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{base}/healthz")).json()
            evil = await http.post(url, headers={"Host": "evil.example", "Content-Type": "application/json"},
                                   content=b"{}")
    assert health == {"status": "ok", "upstreams_ready": 1, "upstreams": 1, "servers": {"math": "ok"}}  # open: local
    assert evil.status_code in (400, 403, 421)


async def test_healthz_is_degraded_while_an_enabled_upstream_is_not_ready_but_stays_200() -> None:
    from mcp_gateway import Gateway
    from tests.helpers import serve_gateway

    servers = {"math": stdio("math_server"), "gone": {"command": "/nonexistent/server"},
               "off": {"command": "/nonexistent/other", "enabled": False}}
    async with (serve_gateway(Gateway(make_config(servers, gateway={"startup_timeout_s": 5}))) as url,
                httpx.AsyncClient() as http):
        response = await http.get(url.replace("/mcp", "/healthz"))
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and response.json()["upstreams_ready"] == 1
    assert response.json()["servers"]["gone"].startswith("failed: command not found: /nonexistent/server")
    del servers["gone"]  # a disabled upstream is not missed
    async with (serve_gateway(Gateway(make_config(servers))) as url, httpx.AsyncClient() as http):
        assert (await http.get(url.replace("/mcp", "/healthz"))).json()["status"] == "ok"


assert FIXTURES.exists()


async def test_upstream_instructions_are_passed_on_under_the_server_name() -> None:
    config = make_config({"math": stdio("math_server"), "text": stdio("text_server", mode="direct")})
    async with gateway_client(config, mode="legacy") as client:
        instructions = client.instructions or ""
    assert instructions.startswith("Tools of the code-mode servers are not listed directly")
    assert "## Server text (direct mode) says:\nCounts are of whitespace-separated words." in instructions
    assert "Server math" not in instructions  # it has none


async def test_instructions_stay_within_what_clients_keep() -> None:
    long_text = "word " * 400
    script = f"from mcp.server.mcpserver import MCPServer\nMCPServer('x', instructions={long_text!r}).run('stdio')\n"
    servers = {f"s{i}": {"command": sys.executable, "args": ["-c", script]} for i in range(4)}
    async with gateway_client(make_config(servers), mode="legacy") as client:
        instructions = client.instructions or ""
    assert len(instructions) <= 2048
    assert "## Server s0 (code mode) says:\nword word" in instructions and "[cut]" in instructions
    assert "more servers' instructions left out" in instructions
