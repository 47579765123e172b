"""Gateway configuration: the TOML format, the `.mcp.json` format, and their errors.

Both formats load into the same pydantic models. Every problem is reported at once,
one line each, naming the file, the key and (where it can be found) the line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sandbox import MIN_MEMORY_MB, Limits, PoolLimits
from stubs import is_identifier, to_identifier

Mode = Literal["code", "direct"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Hosts reachable only from this machine: served without keys, and with DNS-rebinding protection."""
_LIMITS = Limits()  # the sandbox's defaults are the `[limits]` table's defaults
_POOL = PoolLimits()
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Default of `[servers.<name>] max_message_bytes`: one JSON-RPC message an upstream may send."""
MIN_MESSAGE_BYTES = 64 * 1024


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` has one line per problem."""

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {path}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(_Strict):
    """The `[gateway]` table."""

    name: str = "gw"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    default_mode: Mode = "code"
    layout: Literal["server", "tool"] = "server"
    prefix_direct_tools: bool = True
    call_timeout_s: float = Field(default=60.0, gt=0)
    startup_timeout_s: float = Field(default=20.0, ge=0)
    health_interval_s: float = Field(default=30.0, ge=0)
    refresh_interval_s: float = Field(default=300.0, ge=0)
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, gt=0)
    max_sessions_per_key: int = Field(default=64, gt=0)
    state_dir: str = ".mcp-gateway"
    allow_open: bool = False
    anonymous: bool = False
    audit_arguments: bool = False
    audit_row_argument_bytes: int = Field(default=16 * 1024, gt=0)
    audit_key_argument_bytes_per_day: int = Field(default=64 * 1024 * 1024, gt=0)
    audit_retention_days: float = Field(default=90, ge=0)
    approve_destructive: bool = False
    redact: list[str] = ["password", "token", "secret", "api_key", "apikey", "authorization"]


class LimitSettings(_Strict):
    """The `[limits]` table: bounds for one `executeToolCode` script (defaults: `sandbox.Limits`)."""

    timeout_s: float = Field(default=_LIMITS.timeout_s, gt=0)
    max_source_bytes: int = Field(default=_LIMITS.max_source_bytes, gt=0, le=3 * 1024 * 1024)
    max_output_bytes: int = Field(default=_LIMITS.max_output_bytes, gt=0)
    max_result_bytes: int = Field(default=_LIMITS.max_result_bytes, gt=0)
    max_tool_result_bytes: int = Field(default=_LIMITS.max_tool_result_bytes, gt=0)
    max_tool_calls: int = Field(default=_LIMITS.max_tool_calls, gt=0)
    memory_mb: int = Field(default=_LIMITS.memory_mb, ge=MIN_MEMORY_MB)
    max_depth: int = Field(default=_LIMITS.max_depth, gt=0)
    workers: int = Field(default=2, ge=1, le=64)
    max_workers: int | None = Field(default=_POOL.max_workers, ge=1, le=128)
    max_queued_per_key: int = Field(default=_POOL.max_queued_per_key, gt=0)
    max_queued: int = Field(default=_POOL.max_queued, gt=0)
    queue_timeout_s: float = Field(default=_POOL.queue_timeout_s, gt=0)

    @model_validator(mode="after")
    def _enough_workers(self) -> LimitSettings:
        if self.max_workers is not None and self.max_workers < self.workers:
            raise ValueError(f"max_workers ({self.max_workers}) must be at least workers ({self.workers})")
        return self

    def sandbox_limits(self) -> Limits:
        return Limits(**self.model_dump(include=set(Limits.__dataclass_fields__)))

    def pool_limits(self) -> PoolLimits:
        return PoolLimits(**self.model_dump(include=set(PoolLimits.__dataclass_fields__)))


class ServerConfig(_Strict):
    """One `[servers.<name>]` table: an upstream MCP server."""

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    transport: Literal["http", "sse"] | None = None
    headers: dict[str, str] = {}
    mode: Mode | None = None
    enabled: bool = True
    timeout_s: float | None = Field(default=None, gt=0)
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, ge=MIN_MESSAGE_BYTES)

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of `command` (stdio) or `url` (http/sse)")
        if self.command is not None and (self.transport or self.headers):
            raise ValueError("`transport` and `headers` apply only to `url` servers")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("`args`, `env` and `cwd` apply only to `command` servers")
        if self.enabled and self.url is not None and not re.match(r"https?://", self.url, re.I):
            hint = f'; did you mean "http://{self.url}"?' if "://" not in self.url else ""
            raise ValueError(f"`url` must start with http:// or https://, got {self.url!r}{hint}")
        return self

    @property
    def kind(self) -> Literal["stdio", "http", "sse"]:
        return "stdio" if self.command is not None else (self.transport or "http")


class GroupConfig(_Strict):
    """`[groups.<name>]`: tool patterns over `server.tool` (`*` and `?` wildcards)."""

    tools: list[str]


class Quotas(_Strict):
    """Limits a key or a team may carry; unset means unlimited."""

    calls_per_minute: int | None = Field(default=None, gt=0)
    scripts_per_minute: int | None = Field(default=None, gt=0)
    meta_calls_per_minute: int | None = Field(default=None, gt=0)
    budget_per_day: float | None = Field(default=None, ge=0)
    budget_per_month: float | None = Field(default=None, ge=0)


class TeamConfig(Quotas):
    """`[teams.<name>]`: the groups every key of the team gets, and the team's quotas."""

    groups: list[str] = []


class ToolRule(_Strict):
    """`[tools."<pattern>"]`: per-tool settings for tools matching `server.tool` patterns."""

    approval: Literal["always", "never"] | None = None
    price: float = Field(default=0.0, ge=0)


class KeyConfig(Quotas):
    """`[keys.<name>]`: an API key, given as its SHA-256 (`hash`) or in clear through `${ENV}` (`key`)."""

    hash: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    key: str | None = Field(default=None, min_length=16)
    team: str | None = None
    groups: list[str] = []
    remove_groups: list[str] = []
    deny: list[str] = []
    admin: bool = False

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        if (self.hash is None) == (self.key is None):
            raise ValueError("set exactly one of `hash` (sha256:<hex>) or `key` (usually `${ENV_VAR}`)")
        return self


class GatewayConfig(_Strict):
    """The whole file."""

    gateway: GatewaySettings = GatewaySettings()
    limits: LimitSettings = LimitSettings()
    servers: dict[str, ServerConfig] = {}
    groups: dict[str, GroupConfig] = {}
    teams: dict[str, TeamConfig] = {}
    keys: dict[str, KeyConfig] = {}
    tools: dict[str, ToolRule] = {}

    @field_validator("servers")
    @classmethod
    def _names_are_identifiers(cls, servers: dict[str, ServerConfig]) -> dict[str, ServerConfig]:
        bad = [n for n in servers if not is_identifier(n)]
        if bad:
            raise ValueError(
                f"server names must be identifiers (letters, digits, _; not a keyword): {', '.join(bad)}"
            )
        return servers

    @model_validator(mode="after")
    def _pass_through_needs_one_upstream(self) -> GatewayConfig:
        direct = [n for n, s in self.servers.items() if self.mode_of(s) == "direct"]
        if not self.gateway.prefix_direct_tools and len(direct) > 1:
            raise ValueError(
                "gateway.prefix_direct_tools = false needs at most one direct-mode server, "
                f"found {len(direct)}: {', '.join(direct)}"
            )
        return self

    @model_validator(mode="after")
    def _references_exist(self) -> GatewayConfig:
        problems = [
            f"teams.{t}.groups: unknown group {g!r}" for t, team in self.teams.items() for g in team.groups
            if g not in self.groups
        ]
        for name, key in self.keys.items():
            if key.team is not None and key.team not in self.teams:
                problems.append(f"keys.{name}.team: unknown team {key.team!r}")
            problems += [f"keys.{name}.groups: unknown group {g!r}" for g in key.groups if g not in self.groups]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def mode_of(self, server: ServerConfig) -> Mode:
        return server.mode or self.gateway.default_mode

    def timeout_of(self, server: ServerConfig) -> float:
        """Seconds one request to the upstream may take: its `timeout_s`, else `gateway.call_timeout_s`."""
        return server.timeout_s or self.gateway.call_timeout_s


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
    """A relative `state_dir`, and a server's relative `cwd`, are relative to the config file's folder,
    wherever the command runs."""
    folder = path.resolve().parent
    servers = {name: server.model_copy(update={"cwd": str(folder / Path(server.cwd).expanduser())})
               if server.cwd is not None and not Path(server.cwd).expanduser().is_absolute() else server
               for name, server in config.servers.items()}
    config = config.model_copy(update={"servers": servers})
    state = Path(config.gateway.state_dir).expanduser()
    if state.is_absolute():
        return config
    settings = config.gateway.model_copy(update={"state_dir": str(folder / state)})
    return config.model_copy(update={"gateway": settings})


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
