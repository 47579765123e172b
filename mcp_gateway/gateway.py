"""The gateway: upstream sessions, the catalog, the sandbox, and the one path every tool call takes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Self

import anyio
import jsonschema
import mcp_types as types
import structlog
from anyio.abc import TaskGroup

from sandbox import Limits, Sandbox

from .audit import Auditor
from .catalog import Catalog, ToolEntry, build_catalog, restrict
from .config import GatewayConfig
from .errors import GatewayError, InvalidArguments, UnknownTool, UpstreamError, describe_exception
from .keys import KeyRing
from .logs import configure_logging
from .metrics import Metrics
from .policy import NOBODY, OPEN, Identity, current_identity
from .quotas import ApprovalRefused, Quota, ask_approval
from .storage import Storage, open_storage
from .tokens import tool_definition_tokens
from .upstream import Resilience, Upstream

log = structlog.get_logger("mcp_gateway")


class Gateway:
    """Use as `async with Gateway(config) as gw:`; everything else reads `gw.catalog`."""

    def __init__(self, config: GatewayConfig, *, storage: Storage | None = None) -> None:
        if not structlog.is_configured():
            configure_logging()  # embedded use: our log lines go to stderr, never into a host's stdout
        self.config = config
        settings = config.gateway
        resilience = Resilience(health_interval_s=settings.health_interval_s,
                                refresh_interval_s=settings.refresh_interval_s,
                                reconnect_initial_s=settings.reconnect_initial_s,
                                reconnect_max_s=settings.reconnect_max_s,
                                connect_timeout_s=settings.connect_timeout_s)
        self.upstreams = [Upstream(name, cfg, resilience, on_change=self._upstream_changed)
                          for name, cfg in config.servers.items()]
        self.catalog_listeners: list[Callable[[], None]] = []
        lim = config.limits
        self.limits = Limits(
            timeout_s=lim.timeout_s,
            max_source_bytes=lim.max_source_bytes,
            max_output_bytes=lim.max_output_bytes,
            max_result_bytes=lim.max_result_bytes,
            max_tool_result_bytes=lim.max_tool_result_bytes,
            max_tool_calls=lim.max_tool_calls,
            memory_mb=lim.memory_mb,
            max_depth=lim.max_depth,
        )
        self.sandbox = Sandbox(self.limits, workers=lim.workers)
        self.storage: Storage = storage if storage is not None else open_storage(config.gateway.state_dir)
        self.keys = KeyRing(config, self.storage)
        self.auditor = Auditor(self.storage, record_arguments=config.gateway.audit_arguments,
                               redact=config.gateway.redact)
        self.metrics = Metrics()
        self.quota = Quota(config)
        self._views: dict[Identity, Catalog] = {}
        self._savings: dict[int, int] = {}
        self._catalog: Catalog | None = None
        self._catalog_key: tuple[Any, ...] = ()
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator | None] = {}
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._users = 0
        self.calls_in_flight = 0

    async def __aenter__(self) -> Self:
        """Start on the first entry; nested entries (an app's lifespan inside yours) share the running gateway."""
        self._users += 1
        if self._users == 1:
            try:
                await self.start()
            except BaseException:
                self._users = 0
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users == 0:
            await self.aclose()

    async def start(self) -> None:
        """Start every upstream concurrently; wait (bounded) for their first attempt to settle."""
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.push_async_callback(self._stop_upstreams)
        for up in self.upstreams:
            self._tg.start_soon(up.run, name=f"upstream:{up.name}")
        await self._stack.enter_async_context(self.sandbox)
        with anyio.move_on_after(self.config.gateway.startup_timeout_s):
            async with anyio.create_task_group() as tg:
                for up in self.upstreams:
                    tg.start_soon(up.wait_settled)
        pending = [u.name for u in self.upstreams if u.state == "connecting"]
        if pending:
            log.warning("upstreams still connecting", servers=pending)

    async def aclose(self) -> None:
        try:
            await self._stack.aclose()
        finally:
            self.storage.close()

    async def _stop_upstreams(self) -> None:
        """Close sessions in parallel; cancel whatever is still connecting after the grace period."""
        async with anyio.create_task_group() as tg:
            for up in self.upstreams:
                tg.start_soon(up.stop)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    @property
    def full_catalog(self) -> Catalog:
        """Every tool, rebuilt only when an upstream's state or tool list changed."""
        key = tuple((u.state, u.since, id(u.tools)) for u in self.upstreams)
        if self._catalog is None or key != self._catalog_key:
            self._catalog = build_catalog(self.config, self.upstreams)
            self._catalog_key = key
            self._validators.clear()
            self._views.clear()
            self._savings.clear()
        return self._catalog

    @property
    def identity(self) -> Identity:
        """The caller of the request being served (see `policy.acting_as`)."""
        return current_identity(OPEN if self.keys.is_open() else NOBODY)

    @property
    def stdio_identity(self) -> Identity:
        """Over stdio there are no headers: the key, if keys exist, comes from MCP_GATEWAY_KEY."""
        if self.keys.is_open():
            return OPEN
        secret = os.environ.get("MCP_GATEWAY_KEY", "")
        return (self.keys.authenticate(secret) if secret else None) or NOBODY

    @property
    def catalog(self) -> Catalog:
        """The catalog as the current caller sees it: every listing, stub and lookup reads this."""
        full = self.full_catalog
        identity = self.identity
        if identity.allow == ("*",) and not identity.deny and identity.endpoint is None:
            return full
        view = self._views.get(identity)
        if view is None:
            view = self._views[identity] = restrict(full, identity, self.config.gateway.layout)
        return view

    def classic_tokens(self) -> int:
        """Tokens of the code-mode tools the caller would be sent in classic mode (for the savings metric)."""
        catalog = self.catalog
        if id(catalog) not in self._savings:
            code_tools = [e.tool for e in catalog.entries if e.direct_name is None]
            self._savings[id(catalog)] = tool_definition_tokens(code_tools, f"mcp__{self.config.gateway.name}__")
        return self._savings[id(catalog)]

    def _upstream_changed(self, up: Upstream) -> None:
        """An upstream's tools appeared, changed or went away: tell whoever serves listings."""
        for listener in list(self.catalog_listeners):
            listener()

    async def wait_idle(self) -> None:
        """Return once no client `tools/call` is being served (graceful shutdown waits on this)."""
        while self.calls_in_flight:
            await anyio.sleep(0.05)

    def upstream(self, name: str) -> Upstream:
        return next(u for u in self.upstreams if u.name == name)

    async def call_tool(
        self, entry: ToolEntry, arguments: Mapping[str, Any], *, via: str = "direct"
    ) -> types.CallToolResult:
        """The one path for every upstream call: validate, call with the timeout, log.

        Raises `GatewayError` for anything the caller did wrong or the upstream could not
        answer; an upstream `isError` result is returned as it is.
        """
        ref = f"{entry.server}.{entry.tool.name}"
        identity = self.identity
        args = dict(arguments)
        started = time.perf_counter()
        outcome, error, result_bytes, approval = "ok", None, 0, None
        try:
            if not identity.allows(entry.server, entry.tool.name):
                raise UnknownTool(entry.direct_name or entry.ref, [])
            self._validate(entry, args)
            self.quota.check_rate(identity, "calls")
            if self.quota.needs_approval(entry.server, entry.tool):
                approval = await self._approve(ref, args)
            self.quota.charge(identity, self.quota.price(entry.server, entry.tool.name))
            up = self.upstream(entry.server)
            timeout = up.config.timeout_s or self.config.gateway.call_timeout_s
            try:
                result = await up.call_tool(entry.tool.name, args, timeout)
            except TimeoutError:
                raise UpstreamError(ref, f"no answer within {timeout:g} s (timeout_s)") from None
            except GatewayError:
                raise
            except Exception as exc:
                raise UpstreamError(ref, describe_exception(exc)) from exc
            if result.is_error:
                outcome = "tool_error"
            result_bytes = _size(result)
            return result
        except GatewayError as exc:
            outcome, error = type(exc).__name__, str(exc)
            raise
        except anyio.get_cancelled_exc_class():
            outcome, error = "cancelled", "cancelled before the upstream answered"
            raise
        finally:
            elapsed = time.perf_counter() - started
            log.info("tool call", server=entry.server, tool=entry.tool.name, via=via, key=identity.name,
                     ms=round(elapsed * 1000, 2), outcome=outcome)
            self.metrics.calls.labels(entry.server, entry.tool.name, via, outcome).inc()
            self.metrics.latency.labels(entry.server, entry.tool.name).observe(elapsed)
            await self.auditor.record(identity, kind="tool", server=entry.server, tool=entry.tool.name,
                                      arguments=args, outcome=outcome, started=started,
                                      result_bytes=result_bytes, error=error, approval=approval)

    async def _approve(self, ref: str, args: Mapping[str, Any]) -> str:
        shown = json.dumps(args, ensure_ascii=False, default=str)
        decision = await ask_approval(ref, shown if len(shown) <= 500 else shown[:500] + "…")
        if decision == "unsupported":
            raise ApprovalRefused(f"{ref} needs the user's approval, and this client cannot ask (no elicitation)")
        if decision != "accept":
            raise ApprovalRefused(f"{ref} needs the user's approval, and the user answered {decision}")
        return decision

    def _validate(self, entry: ToolEntry, args: dict[str, Any]) -> None:
        key = (entry.server, entry.tool.name)
        if key not in self._validators:
            self._validators[key] = _make_validator(entry.tool.input_schema)
        validator = self._validators[key]
        if validator is None:
            return
        problems = [_describe_error(e) for e in validator.iter_errors(args)]
        if problems:
            raise InvalidArguments(entry.ref if entry.direct_name is None else entry.direct_name, problems[:5])


def _size(result: types.CallToolResult) -> int:
    return sum(len(b.text) if isinstance(b, types.TextContent) else 0 for b in result.content)


def _make_validator(tool_schema: Mapping[str, Any]) -> jsonschema.protocols.Validator | None:
    """A validator for the tool's own schema dialect; none if the upstream schema is itself invalid."""
    schema = dict(tool_schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        log.warning("tool schema is invalid; arguments are not validated", error=exc.message)
        return None
    return cls(schema)


def _describe_error(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message
