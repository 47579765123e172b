"""The gateway: upstream sessions, the catalog, the sandbox, and the one path every tool call takes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any, Self

import anyio
import jsonschema
import mcp_types as types
import structlog
from anyio.abc import TaskGroup

from sandbox import Limits, Sandbox

from .catalog import Catalog, ToolEntry, build_catalog
from .config import GatewayConfig
from .errors import GatewayError, InvalidArguments, UpstreamError, describe_exception
from .upstream import Upstream

log = structlog.get_logger("mcp_gateway")


class Gateway:
    """Use as `async with Gateway(config) as gw:`; everything else reads `gw.catalog`."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.upstreams = [Upstream(name, cfg) for name, cfg in config.servers.items()]
        lim = config.limits
        self.limits = Limits(
            timeout_s=lim.timeout_s,
            max_source_bytes=lim.max_source_bytes,
            max_output_bytes=lim.max_output_bytes,
            max_result_bytes=lim.max_result_bytes,
            max_tool_calls=lim.max_tool_calls,
            memory_mb=lim.memory_mb,
            max_depth=lim.max_depth,
        )
        self.sandbox = Sandbox(self.limits, workers=lim.workers)
        self._catalog: Catalog | None = None
        self._catalog_key: tuple[Any, ...] = ()
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator | None] = {}
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
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
        await self._stack.aclose()

    async def _stop_upstreams(self) -> None:
        """Close sessions in parallel; cancel whatever is still connecting after the grace period."""
        async with anyio.create_task_group() as tg:
            for up in self.upstreams:
                tg.start_soon(up.stop)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    @property
    def catalog(self) -> Catalog:
        """The current snapshot, rebuilt only when an upstream's state or tool list changed."""
        key = tuple((u.state, u.since, id(u.tools)) for u in self.upstreams)
        if self._catalog is None or key != self._catalog_key:
            self._catalog = build_catalog(self.config, self.upstreams)
            self._catalog_key = key
            self._validators.clear()
        return self._catalog

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
        args = dict(arguments)
        self._validate(entry, args)
        up = self.upstream(entry.server)
        timeout = up.config.timeout_s or self.config.gateway.call_timeout_s
        started = time.perf_counter()
        outcome = "ok"
        try:
            result = await up.call_tool(entry.tool.name, args, timeout)
            if result.is_error:
                outcome = "tool_error"
            return result
        except GatewayError:
            outcome = "unavailable"
            raise
        except TimeoutError:
            outcome = "timeout"
            raise UpstreamError(ref, f"no answer within {timeout:g} s (timeout_s)") from None
        except Exception as exc:
            outcome = "error"
            raise UpstreamError(ref, describe_exception(exc)) from exc
        finally:
            log.info(
                "tool call",
                server=entry.server,
                tool=entry.tool.name,
                via=via,
                ms=round((time.perf_counter() - started) * 1000, 2),
                outcome=outcome,
            )

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
