"""Reading a gateway config: TOML or `.mcp.json` files, `${VAR}` expansion, and errors that point at lines.

Both formats load into the models of `config.py`. Every problem is reported at once, one line
each, naming the file, the key and (where it can be found) the line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stubs import to_identifier

from .config import SQLITE_PREFIX, ConfigError, GatewayConfig, GatewaySettings

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_config(path: str | Path) -> GatewayConfig:
    """Read a TOML gateway config or a `.mcp.json` file (chosen by content, not extension)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        data = _parse_mcp_json(str(path), text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), [f"TOML syntax: {exc}"]) from exc
    return _state_beside(parse_config(data, source=str(path), text=text), path)


def _state_beside(config: GatewayConfig, path: Path) -> GatewayConfig:
    """A relative `state_dir`, `secret_key_file`, SQLite `[storage] url` and server `cwd` are relative to the
    config file's folder, wherever the command runs."""
    folder = path.resolve().parent
    servers = {name: server.model_copy(update={"cwd": str(folder / Path(server.cwd).expanduser())})
               if server.cwd is not None and not Path(server.cwd).expanduser().is_absolute() else server
               for name, server in config.servers.items()}
    config = config.model_copy(update={"servers": servers})
    url = config.storage.url
    if url is not None and url.startswith(SQLITE_PREFIX) and not Path(url[len(SQLITE_PREFIX):]).is_absolute():
        storage = config.storage.model_copy(update={"url": SQLITE_PREFIX + str(folder / url[len(SQLITE_PREFIX):])})
        config = config.model_copy(update={"storage": storage})
    paths = {"state_dir": config.gateway.state_dir, "secret_key_file": config.gateway.secret_key_file}
    beside = {name: str(folder / Path(value).expanduser()) for name, value in paths.items()
              if value is not None and not Path(value).expanduser().is_absolute()}
    return config.model_copy(update={"gateway": config.gateway.model_copy(update=beside)}) if beside else config


def load_gateway_settings(path: str | Path) -> GatewaySettings:
    """Only the `[gateway]` table (for `connect`): server tables and their variables are not needed."""
    path = Path(path)
    if not path.exists() or path.suffix == ".json":
        return GatewaySettings()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("gateway", {})
        return GatewaySettings.model_validate(_expand(table, ("gateway",), os.environ, []))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(str(path), [str(exc)]) from exc


def parse_config(data: Mapping[str, Any], *, source: str = "<config>", text: str = "") -> GatewayConfig:
    """Validate already-parsed config data; `text` lets errors point at lines.

    A variable that is not set is a problem only where it is used: not in a server with `enabled = false`.
    `${MCP_GATEWAY_PYTHON}` is the Python running the gateway unless the environment sets it.
    """
    missing: list[tuple[tuple[str, ...], str]] = []
    expanded = _expand(data, (), {"MCP_GATEWAY_PYTHON": sys.executable, **os.environ}, missing)
    servers = data.get("servers")
    off = {n for n, s in servers.items() if isinstance(s, Mapping) and s.get("enabled") is False} \
        if isinstance(servers, Mapping) else set()
    problems = [f"{'.'.join(loc)}: environment variable {var} is not set" + (f" (line {n})" if n else "")
                for loc, var in missing if not (loc[:1] == ("servers",) and len(loc) > 1 and loc[1] in off)
                for n in [_line_of(text, loc)]]
    if problems:
        raise ConfigError(source, problems)
    try:
        return GatewayConfig.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err, text) for err in exc.errors()]) from None


def _expand(value: Any, loc: tuple[str, ...], env: Mapping[str, str], missing: list[tuple[tuple[str, ...], str]]
            ) -> Any:
    """Replace `${VAR}` in every string; collect the key and name of each variable not set."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                missing.append((loc, m.group(1)))
                return ""
            return env[m.group(1)]

        return _VAR.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, (*loc, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*loc, str(i)), env, missing) for i, v in enumerate(value)]
    return value


def _describe(err: Mapping[str, Any], text: str) -> str:
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
    key = ".".join(loc) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    line = _line_of(text, loc)
    where = f" (line {line})" if line else ""
    return f"{key}{where}: {msg}"


def _line_of(text: str, loc: Sequence[str]) -> int | None:
    """Best-effort line of a dotted key in TOML text: the table header, then the key inside it."""
    if not text or not loc:
        return None
    lines = text.splitlines()
    for split in range(len(loc), 0, -1):
        table, rest = loc[:split], loc[split:]
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(p) for p in table) + r"\s*\]")
        for i, line in enumerate(lines):
            if header.match(line):
                if not rest:
                    return i + 1
                key = re.compile(r"^\s*" + re.escape(rest[0]) + r"\s*=")
                for j in range(i + 1, len(lines)):
                    if lines[j].lstrip().startswith("["):
                        break
                    if key.match(lines[j]):
                        return j + 1
                return i + 1
    key = re.compile(r"^\s*" + re.escape(loc[-1]) + r"\s*=")
    return next((i + 1 for i, line in enumerate(lines) if key.match(line)), None)


def _parse_mcp_json(source: str, text: str) -> dict[str, Any]:
    """Turn Claude Code / Claude Desktop `{"mcpServers": {...}}` into our TOML shape."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [f"JSON syntax: {exc}"]) from exc
    servers = doc.get("mcpServers") if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(source, ['expected an object with an "mcpServers" object'])
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, spec in servers.items():
        ident = to_identifier(name)
        if ident in out:
            problems.append(f"mcpServers.{name}: its identifier {ident!r} is already used by another server")
            continue
        if not isinstance(spec, dict):
            problems.append(f"mcpServers.{name}: expected an object")
            continue
        out[ident] = mcp_json_server(spec)
    if problems:
        raise ConfigError(source, problems)
    return {"servers": out}


def mcp_json_server(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One `.mcp.json` server entry as a `[servers.<name>]` table, in Code Mode."""
    kind = spec.get("type", "stdio" if "command" in spec else "http")
    keep = {k: v for k, v in spec.items() if k in {"command", "args", "env", "cwd", "url", "headers"}}
    if kind in ("http", "streamable-http", "streamableHttp") and "url" in spec:
        keep["transport"] = "http"
    elif kind == "sse":
        keep["transport"] = "sse"
    if spec.get("disabled") is True:
        keep["enabled"] = False
    keep["mode"] = "code"
    return keep
