"""Where MCP clients list their servers: read them, find the gateway and the servers it serves, move them.

Claude Code keeps servers in three scopes: the project's `.mcp.json`, the user scope (the top-level
`mcpServers` of `~/.claude.json`) and the local scope (`projects[<folder>].mcpServers` of the same
file). Codex keeps `[mcp_servers.<name>]` tables in `~/.codex/config.toml`. `init` imports from
these; `connect --move` removes from them the servers the gateway serves; `check` and `serve` warn
about servers listed both there and behind the gateway, whose tools the model would see twice.
A client's server is the gateway's when both run the same `command` with the same `args`, or use
the same `url`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import LOOPBACK_HOSTS
from .config_files import mcp_json_server

Spec = Mapping[str, Any]
_LOCAL = (*LOOPBACK_HOSTS, "0.0.0.0")
_GATEWAY_PATH = re.compile(r"/mcp(/[^/]+)?/?")


@dataclass
class Listing:
    """One table of servers in one client config file."""

    path: Path
    label: str
    where: tuple[str, ...]  # keys leading to the table: ("mcpServers",), ("projects", <dir>, "mcpServers")
    scope: str  # "local", "project", "user" or "other" (another project's local scope)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)


def by_precedence(listings: Iterable[Listing]) -> list[Listing]:
    """Claude Code's precedence: local scope, then the project's `.mcp.json`, then user scope."""
    return sorted(listings, key=lambda f: ("local", "project", "user", "other").index(f.scope))


def display(path: Path) -> str:
    """`path` as a user would type it: `./x` in the current folder, `~/x` in the home folder."""
    resolved = path.expanduser().resolve()
    for base, shown in ((Path.cwd().resolve(), "."), (Path.home().resolve(), "~")):
        if resolved.is_relative_to(base):
            return f"{shown}/{resolved.relative_to(base)}"
    return str(path)


def read_json_listings(path: Path, *, cwd: Path, all_projects: bool = False) -> list[Listing]:
    """The tables of a `.mcp.json` or `~/.claude.json`: local scope (this folder) first, then the top
    level, then (with `all_projects`) every other project. Raises `OSError` or `ValueError`."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    shown = display(path)
    projects: dict[str, Any] = doc["projects"] if isinstance(doc.get("projects"), dict) else {}
    here = [k for k in projects if _same_dir(k, cwd)]
    others = [k for k in projects if k not in here] if all_projects else []
    found = [_listing(path, f"{shown} (local scope of {k})", ("projects", k, "mcpServers"), "local", doc)
             for k in here]
    user = bool(projects) or path.name == ".claude.json"
    found.append(_listing(path, f"{shown} ({'user scope' if user else 'project'})", ("mcpServers",),
                          "user" if user else "project", doc))
    found += [_listing(path, f"{shown} (project {k})", ("projects", k, "mcpServers"), "other", doc) for k in others]
    return [f for f in found if f.servers]


def other_projects(path: Path, *, cwd: Path) -> tuple[int, int]:
    """How many other projects of `~/.claude.json` list servers, and how many servers in all."""
    try:
        others = [f for f in read_json_listings(path, cwd=cwd, all_projects=True) if f.scope == "other"]
    except (OSError, ValueError):
        return 0, 0
    return len(others), sum(len(f.servers) for f in others)


def claude_listings(cwd: Path, home: Path) -> list[Listing]:
    """Claude Code's tables for `cwd`: local scope, `./.mcp.json`, user scope (in its precedence order)."""
    found: list[Listing] = []
    user = home / ".claude.json"
    for path in (user, cwd / ".mcp.json"):
        try:
            found += read_json_listings(path, cwd=cwd) if path.is_file() else []
        except (OSError, ValueError):
            continue
    return by_precedence(found)


def codex_listings(home: Path) -> list[Listing]:
    path = home / ".codex" / "config.toml"
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("mcp_servers", {}) if path.is_file() else {}
    except (OSError, ValueError):
        return []
    servers = {n: dict(s) for n, s in table.items() if isinstance(s, dict)}
    return [Listing(path, display(path), ("mcp_servers",), "user", servers)] if servers else []


def client_listings(client: str, cwd: Path, home: Path) -> list[Listing]:
    if client == "codex":
        return codex_listings(home)
    listings = claude_listings(cwd, home)
    return [f for f in listings if f.path.name == ".mcp.json"] if client == "json" else listings


def gateway_reason(name: str, spec: Spec, gateway_name: str, port: int) -> str | None:
    """Why a client's server entry is this gateway itself, or None. Only a local URL can be: it is
    `/mcp` or `/mcp/<group>` on the gateway's port, the entry has the gateway's name, or it sends a
    gateway key (`mgw_...`)."""
    url = spec.get("url")
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        url_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.hostname not in _LOCAL:
        return None
    headers: dict[str, Any] = spec["headers"] if isinstance(spec.get("headers"), dict) else {}
    if name == gateway_name:
        return f"it is this gateway (named {gateway_name!r}, at the local URL {url})"
    if url_port == port and _GATEWAY_PATH.fullmatch(parts.path):
        return f"it is this gateway ({url} is its address)"
    if any(isinstance(v, str) and "mgw_" in v for v in headers.values()):
        return f"it is this gateway ({url} with a gateway key)"
    return None


def signature(spec: Spec) -> tuple[str, ...] | None:
    """What makes two entries the same server: the command and its args, or the URL."""
    if isinstance(spec.get("command"), str):
        args: list[Any] = spec["args"] if isinstance(spec.get("args"), list) else []
        return ("command", spec["command"], *map(str, args))
    if isinstance(spec.get("url"), str):
        return ("url", spec["url"].rstrip("/"))
    return None


def served_in_file(path: Path) -> dict[str, dict[str, Any]]:
    """The enabled servers of a gateway config, read as written (no validation, `${VAR}` left as is)."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json" or text.lstrip().startswith("{"):
            table = {n: mcp_json_server(s) for n, s in json.loads(text).get("mcpServers", {}).items()
                     if isinstance(s, dict)}
        else:
            table = tomllib.loads(text).get("servers", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {n: dict(s) for n, s in table.items() if isinstance(s, dict) and s.get("enabled", True) is not False}


@dataclass
class Duplicate:
    listing: Listing
    name: str  # in the client's table
    served_as: str  # in the gateway's config


def duplicates(listings: Iterable[Listing], served: Mapping[str, Spec], *, config: Path | None) -> list[Duplicate]:
    """Client entries the gateway serves too; never one in the gateway's own config file."""
    by_signature = {sig: name for name, spec in served.items() if (sig := signature(spec)) is not None}
    mine = config.resolve() if config is not None else None
    return [Duplicate(f, name, by_signature[sig]) for f in listings if f.path.resolve() != mine
            for name, spec in f.servers.items() if (sig := signature(spec)) in by_signature]


def describe(dups: list[Duplicate]) -> list[str]:
    lines = []
    for listing in _listings(dups):
        names = [d for d in dups if d.listing is listing]
        what = ", ".join(d.name if d.name == d.served_as else f"{d.name} (served as {d.served_as})" for d in names)
        lines.append(f"{listing.label}: {what}")
    return lines


def move(dups: list[Duplicate]) -> list[str]:
    """Remove the duplicates from their files, each file backed up first; one line per file changed."""
    done = []
    for path in dict.fromkeys(d.listing.path for d in dups):
        mine = [d for d in dups if d.listing.path == path]
        original = path.read_text(encoding="utf-8")
        changed = _without_codex(original, mine) if path.suffix == ".toml" else _without_json(original, mine)
        backup = _free(path.with_name(path.name + ".bak"))
        shutil.copy2(path, backup)
        tmp = path.with_name(path.name + ".mcp-gateway.tmp")
        tmp.write_text(changed, encoding="utf-8")
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
        done.append(f"{display(path)}: removed {', '.join(d.name for d in mine)} (backup: {display(backup)})")
    return done


def _without_json(text: str, dups: list[Duplicate]) -> str:
    doc = json.loads(text)
    for d in dups:
        table = doc
        for key in d.listing.where:
            table = table[key]
        table.pop(d.name, None)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _without_codex(text: str, dups: list[Duplicate]) -> str:
    """Drop each `[mcp_servers.<name>]` table (and its subtables) from the TOML text; the result is
    parsed again and must be the same document without those servers."""
    names = {d.name for d in dups}
    keep: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        header = re.match(r"\s*\[\s*mcp_servers\s*\.\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)", line)
        if line.lstrip().startswith("["):
            dropping = header is not None and header.group(1).strip("\"'") in names
        if not dropping:
            keep.append(line)
    result = "".join(keep)
    before, after = tomllib.loads(text), tomllib.loads(result)
    expected = {n: s for n, s in before.get("mcp_servers", {}).items() if n not in names}
    if after.get("mcp_servers", {}) != expected or {k: v for k, v in before.items() if k != "mcp_servers"} != {
            k: v for k, v in after.items() if k != "mcp_servers"}:
        raise ValueError(f"cannot remove {', '.join(sorted(names))} from this file's layout: edit it by hand")
    return result


def _listing(path: Path, label: str, where: tuple[str, ...], scope: str, doc: Mapping[str, Any]) -> Listing:
    table: Any = doc
    for key in where:
        table = table.get(key) if isinstance(table, dict) else None
    servers = {n: s for n, s in table.items() if isinstance(s, dict)} if isinstance(table, dict) else {}
    return Listing(path, label, where, scope, servers)


def _listings(dups: list[Duplicate]) -> list[Listing]:
    seen: list[Listing] = []
    for d in dups:
        if all(d.listing is not s for s in seen):
            seen.append(d.listing)
    return seen


def _same_dir(key: str, cwd: Path) -> bool:
    try:
        return Path(key).resolve() == cwd.resolve()
    except (OSError, ValueError):
        return False


def _free(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{n}")
        n += 1
    return candidate
