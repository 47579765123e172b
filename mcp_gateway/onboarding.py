"""`mcp-gateway init` and `mcp-gateway connect`: from the servers a user has to a connected client."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stubs import to_identifier

from .clients import Listing, gateway_reason, signature
from .config_files import mcp_json_server


@dataclass
class Found:
    """The servers `init` imports, and one line per server imported or skipped."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def find_mcp_servers(listings: list[Listing], *, gateway_name: str = "gw", port: int = 8080) -> Found:
    """The servers of `listings` (earlier ones win a name), never the gateway itself."""
    found = Found()
    origin: dict[str, str] = {}
    for listing in listings:
        imported = []
        for name, spec in listing.servers.items():
            ident = to_identifier(name)
            reason = gateway_reason(name, spec, gateway_name, port)
            if reason is None and signature(spec) is None:
                reason = "it has neither `command` nor `url`"
            twin = next((n for n, s in found.servers.items() if signature(s) == signature(spec)), None)
            if reason is None and twin is not None:
                reason = f"the same server (command and args, or url) is imported as {twin} from {origin[twin]}"
            if reason is None and ident in found.servers:
                reason = f"the name {ident!r} is taken: kept the one from {origin[ident]}"
            if reason is not None:
                found.notes.append(f"skipped {name} from {listing.label}: {reason}")
                continue
            found.servers[ident] = dict(spec)
            origin[ident] = listing.label
            imported.append(name if name == ident else f"{name} (as {ident})")
        if imported:
            found.notes.append(f"imported from {listing.label}: {', '.join(imported)}")
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
        "anonymous = true         # no key needed while none exists: only you, on this machine (docs/governance.md)",
    ]
    if not servers:
        lines += ["", "# [servers.time]", '# command = "mcp-server-time"', '# args = ["--local-timezone", "UTC"]']
    for server, spec in servers.items():
        lines += ["", f"[servers.{server}]"]
        for key, value in mcp_json_server(spec).items():
            if key != "mode" and value not in ({}, []):
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "{}"
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
