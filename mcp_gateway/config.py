"""The gateway's configuration: its tables as pydantic models, with every default defined here once.

Files are read by `config_files.py` (TOML or `.mcp.json`); both give these models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox import MIN_MEMORY_MB, Limits, PoolLimits
from stubs import is_identifier

Mode = Literal["code", "direct"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Hosts reachable only from this machine: served without keys, and with DNS-rebinding protection."""
_LIMITS = Limits()  # the sandbox's defaults are the `[limits]` table's defaults
_POOL = PoolLimits()
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
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
    max_request_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=4 * 1024 * 1024)
    state_dir: str = ".mcp-gateway"
    secret_key_file: str | None = None
    """A file holding the key that seals OAuth tokens in the store (when `MCP_GATEWAY_SECRET_KEY` is not set);
    a file rather than a value so the key never sits in a config that is committed or shared. Relative paths
    are relative to the config file's folder."""
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/]+$")
    """The gateway's address as users' browsers reach it (`https://gw.example.com`), for OAuth callbacks
    (`<public_url>/oauth/callback`); unset: the origin of `sign_in.resource`, else `http://<host>:<port>`."""
    allow_open: bool = False
    anonymous: bool = False
    audit_arguments: bool = False
    audit_row_argument_bytes: int = Field(default=16 * 1024, gt=0)
    audit_key_argument_bytes_per_day: int = Field(default=64 * 1024 * 1024, gt=0)
    audit_retention_days: float = Field(default=90, ge=0)
    approve_destructive: bool = False
    redact: list[str] = ["password", "token", "secret", "api_key", "apikey", "authorization"]


SQLITE_PREFIX = "sqlite:///"
"""`sqlite:///gateway.db` is relative to the config file's folder, `sqlite:////var/lib/gw.db` absolute."""


class StorageSettings(_Strict):
    """The `[storage]` table: where keys, audit rows, budgets and rate-limit windows live."""

    url: str | None = None
    """`postgresql://user:password@host/db` (several replicas share it), or `sqlite:///path`; unset:
    `gateway.db` in `gateway.state_dir`."""
    pool_size: int = Field(default=10, ge=1, le=200)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    query_timeout_s: float = Field(default=10.0, gt=0)
    synchronous_commit: bool = False
    """PostgreSQL: wait for each commit's WAL flush (survives a crash of PostgreSQL itself, not only of the gateway)."""
    replica: str | None = None
    """This process's name in audit rows; unset: `<hostname>:<port>` (stdio: `<hostname>:stdio`)."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith((SQLITE_PREFIX, "postgres://", "postgresql://")):
            got = url.split("://")[0] + "://..." if "://" in url else "no scheme"  # never echo a password
            raise ValueError(f"`url` must start with postgresql:// or sqlite:/// (got {got})")
        return url


class DashboardSettings(_Strict):
    """The `[dashboard]` table: the read-only web pages at `/ui`, for admin keys (docs/dashboard.md)."""

    enabled: bool = False
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    """How long a dashboard sign-in lasts (its cookie and the server-side session)."""
    page_rows: int = Field(default=50, ge=10, le=500)
    """Audit rows per page of the calls page."""


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


class UpstreamOAuth(_Strict):
    """`[servers.<name>.oauth]`: the upstream is an OAuth-protected resource; the gateway is its OAuth client
    (docs/identity.md). `mcp-gateway auth login <name>` makes the shared login."""

    identity: Literal["shared", "per_user"] = "shared"
    """`shared`: one login serves every caller; `per_user`: each caller's calls use the caller's own login
    (the shared login, when there is one, only lists the server's tools)."""
    client_id: str | None = None
    """A client registered at the upstream's authorization server; unset: dynamic registration (RFC 7591)."""
    client_secret: str | None = None
    scopes: list[str] = []
    """Scopes to ask for; unset: those the upstream's metadata names."""


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
    oauth: UpstreamOAuth | None = None
    roots: bool = False
    """Declare the `roots` capability and answer the server's `roots/list` with the calling client's roots
    (docs/protocol.md#roots). Off by default: declaring it changes how some servers behave (the filesystem
    server replaces the directories of its arguments with the roots it is given)."""

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of `command` (stdio) or `url` (http/sse)")
        if self.command is not None and (self.transport or self.headers):
            raise ValueError("`transport` and `headers` apply only to `url` servers")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("`args`, `env` and `cwd` apply only to `command` servers")
        if self.oauth is not None and self.kind != "http":
            raise ValueError("`oauth` applies only to streamable HTTP servers (`url`, no `transport = \"sse\"`)")
        if self.oauth is not None and "authorization" in {h.lower() for h in self.headers}:
            raise ValueError("set either `oauth` or an Authorization header, not both")
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


class SignInGroup(_Strict):
    """`[sign_in.groups.<idp-group>]`: what members of a group of the identity provider get."""

    team: str | None = None
    groups: list[str] = []
    admin: bool = False


class SignInSettings(Quotas):
    """The `[sign_in]` table: callers sign in with the organisation's OAuth 2.1 / OpenID provider
    (the gateway is a protected resource; docs/identity.md). API keys keep working beside it. Its
    quotas (`calls_per_minute`, `budget_per_day`, ...) apply to each signed-in user."""

    issuer: str = Field(pattern=r"^https?://")
    """The provider's issuer URL; its metadata is read from `/.well-known/openid-configuration` (or RFC 8414)."""
    resource: str = Field(pattern=r"^https?://")
    """This gateway's public `/mcp` URL: published in its protected-resource metadata; tokens must be for it."""
    audience: str | None = None
    """The `aud` tokens must carry, when the provider does not use the resource URL (unset: `resource`)."""
    tokens: Literal["jwt", "introspection"] = "jwt"
    """`jwt`: verified with the provider's published keys; `introspection`: asked of the provider (RFC 7662)."""
    client_id: str | None = None
    client_secret: str | None = None
    """The gateway's client at the provider, for introspection (usually `${ENV_VAR}`)."""
    scopes: list[str] = []
    """Scopes every token must have (also published as `scopes_supported`)."""
    name_claim: str = "email"
    """The claim that names the caller in audit rows, limits and logs (`sub` when the token lacks it)."""
    groups_claim: str = "groups"
    algorithms: list[str] = ["RS256", "PS256", "ES256", "EdDSA"]
    leeway_s: int = Field(default=30, ge=0, le=300)
    cache_s: float = Field(default=60.0, ge=0, le=3600)
    """How long an introspection answer is reused (never past the token's expiry)."""
    groups: dict[str, SignInGroup] = {}

    @model_validator(mode="after")
    def _introspection_needs_a_client(self) -> SignInSettings:
        if self.tokens == "introspection" and not (self.client_id and self.client_secret):
            raise ValueError("sign_in.tokens = \"introspection\" needs client_id and client_secret")
        if not {"none", "HS256", "HS384", "HS512"}.isdisjoint(self.algorithms):
            raise ValueError("sign_in.algorithms: only public-key algorithms (RS*, PS*, ES*, EdDSA) are accepted")
        return self


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
    storage: StorageSettings = StorageSettings()
    limits: LimitSettings = LimitSettings()
    dashboard: DashboardSettings = DashboardSettings()
    sign_in: SignInSettings | None = None
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
    def _requests_hold_a_script(self) -> GatewayConfig:
        need = self.limits.max_source_bytes + 64 * 1024
        if self.gateway.max_request_bytes < need:
            raise ValueError(f"gateway.max_request_bytes ({self.gateway.max_request_bytes}) must hold a script of "
                             f"limits.max_source_bytes plus 64 KiB: at least {need}")
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
        for name, entry in (self.sign_in.groups if self.sign_in else {}).items():
            if entry.team is not None and entry.team not in self.teams:
                problems.append(f"sign_in.groups.{name}.team: unknown team {entry.team!r}")
            problems += [f"sign_in.groups.{name}.groups: unknown group {g!r}" for g in entry.groups
                         if g not in self.groups]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def callback_url(self) -> str:
        """Where upstreams' authorization servers send a user's browser back after an OAuth login."""
        return self.public_base() + "/oauth/callback"

    def public_base(self) -> str:
        """The gateway's origin as browsers reach it: `public_url`, else `sign_in.resource`'s, else host:port."""
        base = self.gateway.public_url
        if base is None and self.sign_in is not None:
            parts = urlsplit(self.sign_in.resource)
            base = f"{parts.scheme}://{parts.netloc}"
        if base is None:
            host = "127.0.0.1" if self.gateway.host in ("0.0.0.0", "::", "") else self.gateway.host
            base = f"http://{f'[{host}]' if ':' in host else host}:{self.gateway.port}"
        return base

    def mode_of(self, server: ServerConfig) -> Mode:
        return server.mode or self.gateway.default_mode

    def timeout_of(self, server: ServerConfig) -> float:
        """Seconds one request to the upstream may take: its `timeout_s`, else `gateway.call_timeout_s`."""
        return server.timeout_s or self.gateway.call_timeout_s
