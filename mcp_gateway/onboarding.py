"""`mcp-gateway init` and `mcp-gateway connect`: from the servers a user has to a connected client."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stubs import to_identifier

from .config import mcp_json_server


def find_mcp_servers(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """MCP servers from `.mcp.json` files and `~/.claude.json` (its top level and every project in it)."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        tables = [doc.get("mcpServers", {})]
        tables += [p.get("mcpServers", {}) for p in doc.get("projects", {}).values() if isinstance(p, dict)]
        for table in tables:
            for name, spec in table.items():
                if isinstance(spec, dict):
                    found.setdefault(to_identifier(name), spec)
    return found


def render_config(servers: Mapping[str, Mapping[str, Any]], *, name: str = "gw", port: int = 8080) -> str:
    """A starter `gateway.toml`: the imported servers in Code Mode, everything else at its default."""
    lines = [
        "# mcp-gateway configuration: every key is described in docs/configuration.md",
        "",
        "[gateway]",
        f"name = {json.dumps(name)}",
        'host = "127.0.0.1"',
        f"port = {port}",
        'default_mode = "code"   # "direct" passes an upstream\'s tools through unchanged',
    ]
    if not servers:
        lines += ["", "# [servers.time]", '# command = "mcp-server-time"', '# args = ["--local-timezone", "UTC"]']
    for server, spec in servers.items():
        lines += ["", f"[servers.{server}]"]
        for key, value in mcp_json_server(spec).items():
            if key != "mode":
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def connect_instructions(client: str, url: str, name: str, key: str | None) -> str:
    """What to run or paste so `client` talks to the gateway."""
    if client == "claude":
        header = f' --header "Authorization: Bearer {key}"' if key else ""
        return f"claude mcp add --transport http {shlex.quote(name)} {url}{header}"
    if client == "codex":
        token = '\nbearer_token_env_var = "MCP_GATEWAY_KEY"   # export MCP_GATEWAY_KEY=<your key>' if key else ""
        return f"# add to ~/.codex/config.toml\n[mcp_servers.{name}]\nurl = {json.dumps(url)}{token}"
    entry: dict[str, Any] = {"type": "http", "url": url}
    if key:
        entry["headers"] = {"Authorization": f"Bearer {key}"}
    return json.dumps({"mcpServers": {name: entry}}, indent=2)
