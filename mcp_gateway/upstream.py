"""One upstream MCP server: its SDK client session, its state, and its tool list.

Each upstream lives in its own task (`run`), because the SDK's client contexts must be
entered and left in the same task. Calls from any task go through the one session.
`run` keeps the session alive: it checks health, refreshes the tool list when the upstream
says it changed, and reconnects with exponential backoff and jitter when the session is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
import httpx2
import mcp_types as types
import structlog
from mcp.client import Client
from mcp.client.session import IncomingMessage
from mcp.client.subscriptions import SubscriptionLost, ToolsListChanged
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ServerEvent
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from .config import GatewaySettings, ServerConfig
from .errors import UpstreamUnavailable, describe_exception
from .resilience import Resilience
from .upstream_client import (
    ClientOptions,
    Seen,
    explain_failure,
    is_stale_session,
    list_all_tools,
    login_hint,
    open_client,
)
from .upstream_messages import restore
from .upstream_personal import PersonalSessions

log = structlog.get_logger("mcp_gateway.upstream")
_NOT_JSON_RPC = "its answer is not a JSON-RPC message: "

State = Literal["connecting", "ready", "failed", "disabled", "stopped"]


class Hooks(Protocol):
    """What an upstream needs from whoever relays its traffic to the gateway's clients."""

    def client_options(self) -> ClientOptions:
        """Callbacks for the SDK `Client` (sampling, elicitation, logging, notifications)."""
        ...

    def progress_callback(self) -> ProgressFnT | None:
        """For the tool call being made now: where its progress goes, or `None`."""
        ...

    async def event(self, event: ServerEvent) -> None:
        """A change a 2026-07-28 upstream announced on its `subscriptions/listen` stream."""
        ...


@dataclass
class Upstream:
    """An upstream server as the gateway sees it."""

    name: str
    config: ServerConfig
    resilience: Resilience = field(default_factory=lambda: Resilience.of(GatewaySettings()))
    hooks: Hooks | None = None
    on_change: Callable[[Upstream], None] | None = None
    on_event: Callable[[Upstream, str, str | None], None] = lambda up, event, detail: None
    """Told each state change (the state, its error) and scheduled reconnect, in this task; must not block or raise."""
    auth: Callable[[], httpx2.Auth] | None = None
    """Makes the `Authorization` of each HTTP session's requests (an OAuth-protected upstream's login)."""
    companions: list[Callable[[Client], Coroutine[Any, Any, None]]] = field(default_factory=list)
    """Run beside each session with its client, cancelled when it ends (resource subscriptions are kept up
    this way, so a new session gets them again); they must not raise."""
    state: State = "connecting"
    error: str | None = None
    since: float = field(default_factory=time.time)
    tools: list[types.Tool] = field(default_factory=list)
    instructions: str | None = None
    failures: int = 0
    _client: Client | None = None
    _broken: str | None = None
    _tools_changed: bool = False
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _retry: anyio.Event = field(default_factory=anyio.Event)
    _auth: httpx2.Auth | None = None
    personal: PersonalSessions | None = None
    """Each caller's own session, for an upstream whose OAuth identity is per user."""
    _stop: anyio.Event = field(default_factory=anyio.Event)
    _settled: anyio.Event = field(default_factory=anyio.Event)
    _finished: anyio.Event = field(default_factory=anyio.Event)

    @property
    def status(self) -> str:
        """One short phrase for `check`, `/healthz` and errors: `ok`, or the state and the reason."""
        if self.state == "ready":
            return "ok"
        return f"{self.state}: {self.reason}" if self.error else self.reason

    @property
    def reason(self) -> str:
        """Why the upstream is not ready (as listings show it)."""
        text = self.error or self.state
        if self.state == "failed" and self.resilience.reconnect and not self._stop.is_set():
            text += "; retrying with backoff"
        return text

    @property
    def client(self) -> Client | None:
        """The live session, or `None` while the upstream is not ready."""
        return self._client if self.state == "ready" else None

    async def run(self) -> None:
        """Connect and hold the session until `stop`; reconnect with backoff whenever it is lost."""
        try:
            if not self.config.enabled:
                self._set("disabled")
                return
            while not self._stop.is_set():
                opened = time.monotonic()
                await self._session()
                if self._stop.is_set() or not self.resilience.reconnect:
                    break
                if time.monotonic() - opened >= self.resilience.reconnect_max_s:
                    self.failures = 0  # it was up for a good while: start the backoff from the bottom
                delay = self.resilience.backoff(self.failures)
                self.failures += 1
                log.info("upstream reconnect scheduled", server=self.name, attempt=self.failures,
                         delay_s=round(delay, 2))
                self.on_event(self, "retrying", f"attempt {self.failures} in {delay:.1f} s")
                self._retry = anyio.Event()
                with anyio.move_on_after(delay):
                    await _first(self._stop, self._retry)
        finally:
            self._client = None
            self._settled.set()
            self._finished.set()

    async def _session(self) -> None:
        """One session from connect to loss or stop; never raises."""
        started = time.perf_counter()
        self._broken, self._tools_changed = None, False
        limit = self.resilience.connect_timeout_s
        seen = Seen()
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + limit) as connecting:
                auth = self._auth = self.auth() if self.auth is not None else None
                async with open_client(self.config, self.client_options(seen), seen, auth) as client:
                    tools = await list_all_tools(client)
                    connecting.deadline = math.inf
                    self._client, self.instructions, self.tools = client, client.instructions, tools
                    self._set("ready")
                    log.info("upstream ready", server=self.name, tools=len(self.tools),
                             ms=round((time.perf_counter() - started) * 1000, 1))
                    async with anyio.create_task_group() as tg:
                        if _announces_list_changes(client):
                            tg.start_soon(self._listen, client)
                        for companion in self.companions:
                            tg.start_soon(companion, client)
                        await self._hold(client)
                        tg.cancel_scope.cancel()
            if connecting.cancelled_caught:
                silent = f"no answer to initialize and tools/list within {limit:g} s"
                self._broken = explain_failure(self.config, silent, seen)
        except Exception as exc:
            self._broken = self._broken or explain_failure(self.config, exc, seen)
        finally:
            self._client = None
        if self._stop.is_set() and self._broken is None:
            self._set("stopped")
        else:
            self._set("failed", self._broken or "session ended")
            log.warning("upstream failed", server=self.name, error=self.error)

    async def _hold(self, client: Client) -> None:
        """Wait for stop or loss; meanwhile check health and refresh the tool list when due or told."""
        res = self.resilience
        now = anyio.current_time()
        next_health = now + res.health_interval_s if res.health_interval_s else float("inf")
        next_refresh = now + res.refresh_interval_s if res.refresh_interval_s else float("inf")
        while not self._stop.is_set() and self._broken is None:
            if self._tools_changed:
                self._tools_changed = False
                await self._refresh(client)
                continue
            self._wake = anyio.Event()
            with anyio.move_on_after(max(0.0, min(next_health, next_refresh) - anyio.current_time())):
                await self._wake.wait()
            now = anyio.current_time()
            if now >= next_health:
                await self._check_health(client)
                next_health = now + res.health_interval_s
            if now >= next_refresh:
                self._tools_changed = True
                next_refresh = now + res.refresh_interval_s

    async def _listen(self, client: Client) -> None:
        """2026-07-28 upstreams announce list changes (tools, prompts, resources) on a `subscriptions/listen`
        stream; re-listen if it drops."""
        caps = client.server_capabilities
        for _ in range(100):
            try:
                async with client.listen(
                    tools_list_changed=bool(caps.tools and caps.tools.list_changed),
                    prompts_list_changed=bool(caps.prompts and caps.prompts.list_changed),
                    resources_list_changed=bool(caps.resources and caps.resources.list_changed),
                ) as subscription:
                    async for event in subscription:
                        if isinstance(event, ToolsListChanged):
                            self._tools_changed = True
                            self._wake.set()
                        elif self.hooks is not None:
                            await self.hooks.event(event)
                return
            except SubscriptionLost:
                self._tools_changed = True  # changes may have been missed while the stream was down
                self._wake.set()
                await anyio.sleep(1.0)
            except Exception as exc:
                log.info("upstream tool changes not followed", server=self.name, error=describe_exception(exc))
                return

    async def _check_health(self, client: Client) -> None:
        """`ping` where the protocol has it; otherwise (or if refused) the first page of `tools/list`."""
        timeout = max(5.0, min(30.0, self.resilience.health_interval_s))
        try:
            with anyio.fail_after(timeout):
                if client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                    try:
                        await client.session.send_ping()
                        return
                    except MCPError as exc:
                        if exc.code != types.METHOD_NOT_FOUND:
                            raise
                await client.list_tools()
        except TimeoutError:
            self._lost(f"health check: no answer within {timeout:g} s")
        except Exception as exc:
            self._lost(f"health check failed: {describe_exception(exc)}")

    async def _refresh(self, client: Client) -> None:
        try:
            with anyio.fail_after(max(10.0, self.config.timeout_s or 0)):
                tools = await list_all_tools(client)
        except Exception as exc:
            self._lost(f"tools/list failed: {describe_exception(exc)}")
            return
        if [t.model_dump() for t in tools] != [t.model_dump() for t in self.tools]:
            self.tools = tools
            self.since = time.time()
            log.info("upstream tools changed", server=self.name, tools=len(tools))
            self._changed()

    async def wait_settled(self) -> None:
        """Wait until the first connection attempt has succeeded or failed."""
        await self._settled.wait()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask `run` to close the session; returns when it has, or after `grace_s`."""
        self._stop.set()
        self._wake.set()
        with anyio.move_on_after(grace_s):
            await self._finished.wait()

    async def call_tool(self, tool: str, arguments: dict[str, Any], timeout_s: float,
                        owner: str | None = None) -> types.CallToolResult:
        """Call one tool on the shared session (or, for a per-user OAuth upstream, in `owner`'s own session),
        bounded by `timeout_s`.

        A stale HTTP session (the upstream answered 404 for it, so the call never ran) is replaced
        and the call retried once; a call lost with its connection may have run and is not retried.
        Big structured content comes back from where it was held while the SDK handled the message.
        """
        return restore(await self._call(tool, arguments, timeout_s, owner))

    async def _call(self, tool: str, arguments: dict[str, Any], timeout_s: float,
                    owner: str | None) -> types.CallToolResult:
        with anyio.fail_after(timeout_s):
            if self.personal is not None and owner is not None:
                if self.state != "ready":  # its tools come from the shared session
                    raise UpstreamUnavailable(self.name, self.status)
                progress = self.hooks.progress_callback() if self.hooks else None
                return await self.personal.call_tool(owner, tool, arguments, timeout_s, progress)
            try:
                return await self._call_once(tool, arguments, timeout_s)
            except MCPError as exc:
                if not is_stale_session(exc):
                    raise
                self._lost(f"session expired upstream ({exc.message})")
            await self._reconnected()
            return await self._call_once(tool, arguments, timeout_s)

    async def _call_once(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> types.CallToolResult:
        client = self.client
        if client is None:
            raise UpstreamUnavailable(self.name, self.status)
        progress = self.hooks.progress_callback() if self.hooks else None
        try:
            return await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s,
                                          progress_callback=progress)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._lost(exc.message)
                refused = getattr(self._auth, "refused", None)
                if refused is not None:  # the login behind the connection is gone: say what to do
                    raise UpstreamUnavailable(self.name, "needs an OAuth login", login_hint(refused)) from None
            raise

    def retry_now(self) -> None:
        """Reconnect at once if waiting to (a login was just made for it), from the shortest backoff."""
        self.failures = 0
        self._retry.set()

    async def _reconnected(self) -> None:
        """Restart the backoff from its shortest delay; wait for the next session (the caller's timeout bounds it)."""
        self.failures = 0
        while self.state != "ready" and not self._stop.is_set():
            await anyio.sleep(0.02)

    def _lost(self, reason: str) -> None:
        """The session is gone: hide the tools now and let `run` reconnect."""
        if self._broken is None and self.state == "ready":
            self._broken = f"connection lost: {reason}"
            self._set("failed", self._broken)
            log.warning("upstream lost", server=self.name, error=self.error)
        self._wake.set()

    def client_options(self, seen: Seen) -> ClientOptions:
        """The SDK `Client`'s options for one of this upstream's sessions (the hooks, and tool-list changes)."""
        options: ClientOptions = self.hooks.client_options() if self.hooks else {}
        if not self.config.roots:  # the SDK declares `roots` whenever it has the callback; only on opt-in
            options.pop("list_roots_callback", None)
        relay = options.get("message_handler")

        async def on_message(message: IncomingMessage) -> None:
            if isinstance(message, Exception) and seen.stray is None and _NOT_JSON_RPC in str(message):
                seen.stray = str(message).split(_NOT_JSON_RPC, 1)[1] or "not JSON-RPC"
            if isinstance(message, types.ToolListChangedNotification):
                self._tools_changed = True
                self._wake.set()
            if relay is not None:
                await relay(message)

        options["message_handler"] = on_message
        return options

    def _set(self, state: State, error: str | None = None) -> None:
        was_listed = bool(self.tools)
        self.state, self.error, self.since = state, error, time.time()
        self.on_event(self, state, error)
        if state != "ready":
            self.tools = []
        if state in ("failed", "disabled", "ready"):
            self._settled.set()
        if was_listed or self.tools:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)


def _announces_list_changes(client: Client) -> bool:
    """A 2026-07-28 upstream that announces changes to any of its lists (on a `subscriptions/listen` stream)."""
    caps = client.server_capabilities
    lists = (caps.tools, caps.prompts, caps.resources)
    return client.protocol_version in MODERN_PROTOCOL_VERSIONS and any(c is not None and c.list_changed for c in lists)


async def _first(*events: anyio.Event) -> None:
    """Return when any of `events` is set."""
    async with anyio.create_task_group() as tg:
        for event in events:
            async def wait(e: anyio.Event = event) -> None:
                await e.wait()
                tg.cancel_scope.cancel()
            tg.start_soon(wait)
