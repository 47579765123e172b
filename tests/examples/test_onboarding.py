"""A new user's first hour, run as they would run it: `init`, `connect`, `check` and `serve` from a shell.

Each command runs as a subprocess with its own HOME, so `~/.claude.json` and `~/.codex/config.toml`
are the test's own files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from mcp_gateway.clients import gateway_reason
from mcp_gateway.config_files import load_config
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(tmp_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mcp_gateway.cli", *args], cwd=cwd or tmp_path / "project",
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def user(tmp_path: Path) -> Path:
    """A home with user-scope servers, the gateway itself, this project's local servers and another project's;
    a project folder with its own `.mcp.json`."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    claude = {
        "numStartups": 7,
        "mcpServers": {
            "gw": {"type": "http", "url": "http://127.0.0.1:9000/mcp"},
            "gateway-ops": {"type": "http", "url": "http://localhost:8080/mcp/ops"},
            "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"], "env": {}},
            "fetch": {"command": "uvx", "args": ["mcp-server-fetch"]},
            "notes": {"command": "notes-server"},
        },
        "projects": {
            str(project): {"mcpServers": {"fetch": {"command": "npx", "args": ["fetch-local"]}}},
            str(tmp_path / "elsewhere"): {"mcpServers": {"secret": {"command": "secret-server"}}},
        },
    }
    (home / ".claude.json").write_text(json.dumps(claude))
    mcp_json = {"mcpServers": {"docs": {"type": "http", "url": "https://docs.example.com/mcp"},
                               "my-time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"]}}}
    (project / ".mcp.json").write_text(json.dumps(mcp_json))
    return tmp_path


def test_init_imports_this_project_and_the_user_scope_never_the_gateway(user: Path) -> None:
    done = cli(user, "init")
    assert done.returncode == 0, done.stderr
    text = (user / "project" / "gateway.toml").read_text()
    servers = tomllib.loads(text)["servers"]
    assert set(servers) == {"fetch", "docs", "my_time", "notes"}
    assert servers["fetch"]["command"] == "npx"  # the local scope wins over the user scope, as in Claude Code
    assert "env = {" not in text
    said = done.stderr
    assert "skipped gw from ~/.claude.json (user scope): it is this gateway" in said
    assert "skipped gateway-ops from ~/.claude.json (user scope): it is this gateway" in said
    assert "the name 'fetch' is taken: kept the one from ~/.claude.json (local scope of" in said
    assert "skipped time from ~/.claude.json (user scope): the same server (command and args, or url) " \
           "is imported as my_time from ./.mcp.json (project)" in said
    assert "imported from ./.mcp.json (project): docs, my-time (as my_time)" in said
    assert "not imported: 1 server(s) of 1 other project(s) in ~/.claude.json (--all-projects" in said
    load_config(user / "project" / "gateway.toml")

    everything = cli(user, "init", "--all-projects", "-o", "all.toml")
    assert "secret" in tomllib.loads((user / "project" / "all.toml").read_text())["servers"], everything.stderr


def test_init_refuses_a_missing_import_file(user: Path) -> None:
    done = cli(user, "init", "--import", "nosuch.json")
    assert done.returncode == 2
    assert "nosuch.json: no such file" in done.stderr
    assert not (user / "project" / "gateway.toml").exists()


def test_the_gateway_is_recognised_by_its_local_url() -> None:
    assert gateway_reason("anything", {"url": "http://127.0.0.1:8080/mcp"}, "gw", 8080)
    assert gateway_reason("anything", {"url": "http://[::1]:8080/mcp/ops/"}, "gw", 8080)
    assert gateway_reason("gw", {"url": "http://localhost:9999/mcp"}, "gw", 8080)
    keyed = {"url": "http://127.0.0.1:1/y", "headers": {"Authorization": "Bearer mgw_1"}}
    assert gateway_reason("x", keyed, "gw", 8080)
    assert gateway_reason("gw", {"url": "https://gw.example.com/mcp"}, "gw", 8080) is None
    assert gateway_reason("other", {"url": "http://127.0.0.1:8080/api"}, "gw", 8080) is None
    assert gateway_reason("other", {"url": "http://127.0.0.1:8081/mcp"}, "gw", 8080) is None
    assert gateway_reason("gw", {"command": "gw"}, "gw", 8080) is None


def test_connect_shows_then_moves_the_servers_the_gateway_serves(user: Path) -> None:
    project, home = user / "project", user / "home"
    codex = home / ".codex" / "config.toml"
    codex.parent.mkdir()
    codex.write_text('model = "o3"\n\n[mcp_servers.time]\ncommand = "mcp-server-time"\n'
                     'args = ["--local-timezone", "UTC"]\n\n[mcp_servers.time.env]\nTZ = "UTC"\n\n'
                     '[mcp_servers.keep]\ncommand = "keep-me"\n')
    assert cli(user, "init").returncode == 0
    before = {p: p.read_text() for p in (project / ".mcp.json", home / ".claude.json", codex)}

    shown = cli(user, "connect", "claude")
    assert shown.stdout.strip() == "claude mcp add --transport http gw http://127.0.0.1:8080/mcp"
    assert "~/.claude.json (local scope of" in shown.stderr and ": fetch" in shown.stderr
    assert "./.mcp.json (project): docs, my-time (served as my_time)" in shown.stderr
    assert "~/.claude.json (user scope): time (served as my_time), notes" in shown.stderr
    assert "--move removes them" in shown.stderr
    assert {p: p.read_text() for p in before} == before  # nothing changes without --move

    moved = cli(user, "connect", "claude", "--move")
    assert moved.returncode == 0, moved.stderr
    assert "./.mcp.json: removed docs, my-time (backup: ./.mcp.json.bak)" in moved.stderr
    assert (project / ".mcp.json.bak").read_text() == before[project / ".mcp.json"]
    assert json.loads((project / ".mcp.json").read_text()) == {"mcpServers": {}}
    claude = json.loads((home / ".claude.json").read_text())
    assert set(claude["mcpServers"]) == {"gw", "gateway-ops", "fetch"}  # the gateway and what it does not serve
    assert claude["projects"][str(project)]["mcpServers"] == {}
    assert claude["projects"][str(user / "elsewhere")]["mcpServers"] == {"secret": {"command": "secret-server"}}
    assert claude["numStartups"] == 7
    assert (home / ".claude.json.bak").read_text() == before[home / ".claude.json"]
    assert codex.read_text() == before[codex]  # `connect claude` leaves codex alone

    assert "~/.codex/config.toml: removed time" in cli(user, "connect", "codex", "--move").stderr
    assert tomllib.loads(codex.read_text()) == {"model": "o3", "mcp_servers": {"keep": {"command": "keep-me"}}}
    assert "nothing to move" in cli(user, "connect", "codex", "--move").stderr


def test_check_warns_about_duplicates_and_gives_no_advice_when_nothing_is_ready(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "project" / ".mcp.json").write_text(json.dumps({"mcpServers": {"broken": {"command": "false"}}}))
    (tmp_path / "project" / "gateway.toml").write_text('[servers.broken]\ncommand = "false"\n')
    done = cli(tmp_path, "check", "--config", "gateway.toml")
    assert done.returncode == 1
    assert "./.mcp.json (project): broken" in done.stderr
    assert "mcp-gateway connect claude --move" in done.stderr
    assert "no upstream is ready" in done.stdout and "consider mode" not in done.stdout


def test_config_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRST_HOUR_UNSET", raising=False)
    path = tmp_path / "gateway.toml"
    path.write_text('[servers.later]\nenabled = false\nurl = "${FIRST_HOUR_UNSET}/mcp"\n\n'
                    '[servers.now]\ncommand = "x"\nenv = { TOKEN = "${FIRST_HOUR_UNSET}" }\n')
    with pytest.raises(Exception, match=r"servers\.now\.env\.TOKEN: environment variable FIRST_HOUR_UNSET is "
                                        r"not set \(line 7\)") as info:
        load_config(path)
    assert "servers.later" not in str(info.value)  # a disabled server's variables are not needed
    path.write_text('[servers.now]\nurl = "127.0.0.1:8095/mcp"\n')
    with pytest.raises(Exception, match=r'servers\.now \(line 1\): `url` must start with http:// or https://.*'
                                        r'did you mean "http://127\.0\.0\.1:8095/mcp"'):
        load_config(path)


def test_serve_refuses_a_port_in_use_or_out_of_range_before_announcing(tmp_path: Path) -> None:
    import socket

    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "gateway.toml").write_text("[gateway]\nname = \"gw\"\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = cli(tmp_path, "serve", "--config", "gateway.toml", "--port", port)
    assert busy.returncode == 2
    assert f"error: port {port} is in use: pass --port N or set gateway.port" in busy.stderr
    assert "serving" not in busy.stderr and "claude mcp add" not in busy.stderr
    wrong = cli(tmp_path, "serve", "--config", "gateway.toml", "--port", "99999")
    assert wrong.returncode == 2 and "a port is a number from 0 to 65535" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_with_keys_the_banner_and_the_401_say_how_to_send_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "gateway.toml").write_text('[groups.all]\ntools = ["*"]\n')
    assert cli(tmp_path, "keys", "create", "alice", "--groups", "all", "--config", "gateway.toml").returncode == 0
    port = free_port()
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", "gateway.toml",
                             "--port", str(port)], cwd=project, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=5) as http:
            denied = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                               headers={"Accept": "application/json, text/event-stream"})
            probes = [http.get("/.well-known/oauth-protected-resource").status_code,
                      http.get("/.well-known/oauth-authorization-server").status_code,
                      http.post("/register", json={}).status_code]
            registration = http.post("/register", json={}).text  # Claude Code prints it after "HTTP 404"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert (f'claude mcp add --transport http gw {base}/mcp --header "Authorization: Bearer <your key>"'
            in stderr)
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == 'Bearer realm="mcp-gateway"'
    error = denied.json()["error"]
    assert denied.json()["jsonrpc"] == "2.0" and error["code"] == -32001
    assert "Authorization: Bearer <key>" in error["message"] and "mcp-gateway keys create" in error["message"]
    assert probes == [404, 404, 404]
    assert "no OAuth sign-in: it needs an API key" in registration and "connect claude --key" in registration


def test_small_things(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "gateway.toml").write_text('[groups.all]\ntools = ["*"]\n')
    version = cli(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "mcp-gateway 0.1.0"
    assert cli(tmp_path, "keys", "create", "bob", "--groups", "all", "--config", "gateway.toml").returncode == 0
    revoked = cli(tmp_path, "keys", "revoke", "bob", "--config", "gateway.toml")
    assert revoked.returncode == 0 and "key 'bob' revoked" in revoked.stderr

    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "keys", "list", "--config", "gateway.toml"],
                            cwd=tmp_path / "project", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # as `| head` does once it has read enough
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr


def test_the_demo_runs_from_any_folder(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    done = cli(tmp_path, "check", "--config", str(ROOT / "examples" / "demo" / "gateway.toml"))
    assert done.returncode == 0, done.stderr
    assert [line.split()[3] for line in done.stdout.splitlines()[2:5]] == ["ok", "ok", "ok"]


def test_connect_prints_the_key_header_for_a_gateway_that_needs_keys_and_names_a_revoked_name(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "gateway.toml").write_text('[groups.all]\ntools = ["*"]\n')
    line = cli(tmp_path, "connect", "claude", "--config", "gateway.toml")
    assert '--header "Authorization: Bearer <your key>"' in line.stdout and "needs an API key" in line.stderr
    assert cli(tmp_path, "keys", "create", "ann", "--groups", "all", "--config", "gateway.toml").returncode == 0
    assert cli(tmp_path, "keys", "revoke", "ann", "--config", "gateway.toml").returncode == 0
    again = cli(tmp_path, "keys", "create", "ann", "--groups", "all", "--config", "gateway.toml")
    assert again.returncode == 2 and "already exists, revoked 20" in again.stderr and "choose another" in again.stderr
