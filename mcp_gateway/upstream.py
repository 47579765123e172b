"""One upstream MCP server: its SDK client session, its state, and its tool list.

Each upstream lives in its own task (`run`), because the SDK's client contexts must be
entered and left in the same task. Calls from any task go through the one session.
Reconnection and health checks belong in `run`'s loop (the resilience work adds them).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
import structlog
from mcp.client import Client, Transport
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .config import ServerConfig
from .errors import UpstreamUnavailable, describe_exception

log = structlog.get_logger("mcp_gateway.upstream")

State = Literal["connecting", "ready", "failed", "disabled", "stopped"]


@dataclass
class Upstream:
    """An upstream server as the gateway sees it."""

    name: str
    config: ServerConfig
    state: State = "connecting"
    error: str | None = None
    since: float = field(default_factory=time.time)
    tools: list[types.Tool] = field(default_factory=list)
    instructions: str | None = None
    _client: Client | None = None
    _stop: anyio.Event = field(default_factory=anyio.Event)
    _settled: anyio.Event = field(default_factory=anyio.Event)
    _finished: anyio.Event = field(default_factory=anyio.Event)

    @property
    def status(self) -> str:
        """One short phrase for listings and `check`."""
        if self.state == "ready":
            return "ok"
        return f"{self.state}: {self.error}" if self.error else self.state

    async def run(self) -> None:
        """Connect, list tools, then hold the session open until `stop`."""
        if not self.config.enabled:
            self._set("disabled")
            self._finished.set()
            return
        started = time.perf_counter()
        try:
            async with _client_for(self.config) as client:
                self._client = client
                self.instructions = client.instructions
                self.tools = await _list_all_tools(client)
                self._set("ready")
                log.info(
                    "upstream ready",
                    server=self.name,
                    tools=len(self.tools),
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
                await self._stop.wait()
                if self.state == "ready":
                    self._set("stopped")
        except Exception as exc:
            self._set("failed", describe_exception(exc))
            log.warning("upstream failed", server=self.name, error=self.error)
        finally:
            self._client = None
            self._settled.set()
            self._finished.set()

    async def wait_settled(self) -> None:
        """Wait until the first connection attempt has succeeded or failed."""
        await self._settled.wait()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask `run` to close the session; returns when it has, or after `grace_s`."""
        self._stop.set()
        with anyio.move_on_after(grace_s):
            await self._finished.wait()

    async def call_tool(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> types.CallToolResult:
        """Call one tool on the shared session, bounded by `timeout_s`."""
        client = self._client
        if client is None or self.state != "ready":
            raise UpstreamUnavailable(self.name, self.status)
        try:
            with anyio.fail_after(timeout_s):
                return await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._lost(exc.message)
            raise

    def _lost(self, reason: str) -> None:
        """The session is gone: hide the tools and let `run` end (the resilience work reconnects here)."""
        if self.state == "ready":
            self._set("failed", f"connection lost: {reason}")
            log.warning("upstream lost", server=self.name, error=self.error)
            self._stop.set()

    def _set(self, state: State, error: str | None = None) -> None:
        self.state, self.error, self.since = state, error, time.time()
        if state != "ready":
            self.tools = []
        if state in ("failed", "disabled", "ready"):
            self._settled.set()


async def _list_all_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


@contextlib.asynccontextmanager
async def _client_for(config: ServerConfig) -> AsyncIterator[Client]:
    """Open an SDK `Client` for any of the three transports."""
    async with contextlib.AsyncExitStack() as stack:
        transport: Transport
        if config.kind == "stdio":
            assert config.command is not None
            params = StdioServerParameters(
                command=config.command, args=config.args, env=config.env or None, cwd=config.cwd
            )
            transport = stdio_client(params, errlog=sys.stderr)
        elif config.kind == "sse":
            assert config.url is not None
            transport = sse_client(config.url, headers=config.headers or None)
        else:
            assert config.url is not None
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=config.headers, timeout=httpx2.Timeout(30.0, read=300.0), follow_redirects=False
                )
            )
            transport = streamable_http_client(config.url, http_client=http)
        client = await stack.enter_async_context(
            Client(transport, cache=None, client_info=types.Implementation(name="mcp-gateway", version="0.1.0"))
        )
        yield client
