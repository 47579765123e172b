"""Config loading: TOML and .mcp.json, env expansion, and one clear message per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_gateway.config import ConfigError
from mcp_gateway.config_files import load_config


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_with_env_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cret")
    cfg = load_config(
        write(
            tmp_path,
            "gw.toml",
            """
[gateway]
default_mode = "direct"

[servers.remote]
url = "http://127.0.0.1:9/mcp"
headers = { Authorization = "Bearer ${API_TOKEN}" }

[servers.local]
command = "python"
args = ["server.py"]
mode = "code"
timeout_s = 5
""",
        )
    )
    assert cfg.servers["remote"].headers == {"Authorization": "Bearer s3cret"}
    assert cfg.servers["remote"].kind == "http"
    assert cfg.mode_of(cfg.servers["remote"]) == "direct"
    assert cfg.mode_of(cfg.servers["local"]) == "code"
    assert cfg.servers["local"].timeout_s == 5


def test_every_problem_is_reported_with_key_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gw.toml",
        """[gateway]
default_mode = "fast"

[servers.ok]
command = "x"
colour = "blue"

[servers.both]
command = "x"
url = "http://127.0.0.1/mcp"

[servers.timeouts]
command = "x"
timeout_s = "soon"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "gateway.default_mode (line 2)" in text
    assert "servers.ok.colour (line 6): unknown key" in text
    assert "servers.both (line 8): set exactly one of `command` (stdio) or `url` (http/sse)" in text
    assert "servers.timeouts.timeout_s (line 14)" in text
    assert str(path) in str(info.value)


def test_missing_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    path = write(tmp_path, "gw.toml", '[servers.a]\nurl = "http://127.0.0.1/${NOPE_NOT_SET}"\n')
    with pytest.raises(ConfigError, match=r"servers\.a\.url: environment variable NOPE_NOT_SET is not set"):
        load_config(path)


def test_server_name_must_be_identifier(tmp_path: Path) -> None:
    path = write(tmp_path, "gw.toml", '[servers."my-server"]\ncommand = "x"\n')
    with pytest.raises(ConfigError, match=r"server names must be identifiers.*my-server"):
        load_config(path)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gw.toml", "[servers.a]\ncommand = \n")
    with pytest.raises(ConfigError, match=r"TOML syntax: .*line 2"):
        load_config(path)


def test_mcp_json_servers_become_code_mode(tmp_path: Path) -> None:
    doc = {
        "mcpServers": {
            "git-tools": {"command": "uvx", "args": ["mcp-server-git"]},
            "remote": {"type": "http", "url": "http://127.0.0.1:1/mcp", "headers": {"X": "1"}},
            "events": {"type": "sse", "url": "http://127.0.0.1:1/sse"},
        }
    }
    cfg = load_config(write(tmp_path, ".mcp.json", json.dumps(doc)))
    assert set(cfg.servers) == {"git_tools", "remote", "events"}
    assert cfg.servers["git_tools"].args == ["mcp-server-git"]
    assert cfg.servers["remote"].kind == "http"
    assert cfg.servers["events"].kind == "sse"
    assert all(cfg.mode_of(s) == "code" for s in cfg.servers.values())


def test_mcp_json_without_servers_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mcpServers"):
        load_config(write(tmp_path, "x.json", '{"servers": {}}'))


def test_pass_through_names_need_a_single_direct_server(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gw.toml",
        '[gateway]\nprefix_direct_tools = false\n[servers.a]\ncommand = "x"\nmode = "direct"\n'
        '[servers.b]\ncommand = "y"\nmode = "direct"\n',
    )
    with pytest.raises(ConfigError, match="at most one direct-mode server"):
        load_config(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.toml")
