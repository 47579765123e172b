"""Each caller's own session with an upstream whose OAuth identity is per user (`identity = "per_user"`).

The upstream's shared session lists its tools; a caller's calls go through a session opened with that
caller's own login, so the upstream sees them as themselves and no caller's calls use another's token.
A caller's session is opened on its first call, kept while used, closed after `IDLE_S` without a call;
at most `MAX_SESSIONS` per upstream are kept (the least recently used idle one is closed first; a session
with a call in flight is never closed for room or idleness, and when all are busy a new caller is told so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
import structlog
from anyio.abc import TaskGroup, TaskStatus
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from .config import ServerConfig
from .errors import UpstreamUnavailable
from .oauth.auth import UpstreamAuth
from .upstream_client import ClientOptions, Seen, explain_failure, is_stale_session, open_client

log = structlog.get_logger("mcp_gateway.upstream")

IDLE_S = 300.0
MAX_SESSIONS = 200


@dataclass
class _Session:
    client: Client
    auth: UpstreamAuth
    used: float = field(default_factory=time.monotonic)
    done: anyio.Event = field(default_factory=anyio.Event)
    calls: int = 0
    """Calls in flight."""


class PersonalSessions:
    """The per-caller sessions of one upstream; `run` holds them (in the gateway's task group)."""

    def __init__(self, name: str, config: ServerConfig, options: Callable[[Seen], ClientOptions],
                 auth_for: Callable[[str], UpstreamAuth]) -> None:
        self.name = name
        self.config = config
        self.options = options
        self.auth_for = auth_for
        self._sessions: dict[str, _Session] = {}
        self._opening: dict[str, anyio.Lock] = {}
        self._tg: TaskGroup | None = None

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                while True:
                    await anyio.sleep(IDLE_S / 10)
                    self._close_idle()
            finally:
                self._tg = None
                for session in self._sessions.values():
                    session.done.set()

    async def call_tool(self, owner: str, tool: str, arguments: dict[str, Any], timeout_s: float,
                        progress: Any = None) -> types.CallToolResult:
        """Call `tool` in `owner`'s session (opened with `owner`'s login; raises `LoginRequired` without one)."""
        for attempt in range(2):
            session = await self._session(owner)
            session.used = time.monotonic()
            session.calls += 1
            try:
                return await session.client.call_tool(tool, arguments, read_timeout_seconds=timeout_s,
                                                      progress_callback=progress)
            except MCPError as exc:
                gone = exc.code == types.CONNECTION_CLOSED or is_stale_session(exc)
                if not gone:
                    raise
                self._drop(owner, session)
                if session.auth.refused is not None:
                    raise session.auth.refused from None
                if attempt == 1 or exc.code == types.CONNECTION_CLOSED:  # a call lost with its connection may
                    raise  # have run: never sent twice
            finally:
                session.calls -= 1
                session.used = time.monotonic()
        raise AssertionError("unreachable")

    async def _session(self, owner: str) -> _Session:
        found = self._sessions.get(owner)
        if found is not None and not found.done.is_set():
            return found
        lock = self._opening.setdefault(owner, anyio.Lock())
        async with lock:
            found = self._sessions.get(owner)
            if found is not None and not found.done.is_set():
                return found
            if self._tg is None:
                raise UpstreamUnavailable(self.name, "stopping")
            auth = self.auth_for(owner)
            await auth.grants.fresh(self.name, owner)  # no login: LoginRequired, before any connection
            self._make_room()
            session: _Session = await self._tg.start(self._hold, owner, auth)
            self._sessions[owner] = session
            return session

    async def _hold(self, owner: str, auth: UpstreamAuth, task_status: TaskStatus[_Session]) -> None:
        """Open `owner`'s session and keep it until dropped; a failure to open is raised to the caller of
        `start`, a failure later only ends the session (the next call opens another)."""
        seen = Seen()
        session: _Session | None = None
        try:
            async with open_client(self.config, self.options(seen), seen, auth) as client:
                session = _Session(client, auth)
                task_status.started(session)
                log.info("personal upstream session opened", server=self.name, owner=owner)
                await session.done.wait()
        except Exception as exc:
            if session is None:
                if auth.refused is not None:
                    raise auth.refused from None
                raise UpstreamUnavailable(self.name, explain_failure(self.config, exc, seen)) from None
            log.warning("personal upstream session lost", server=self.name, owner=owner,
                        error=explain_failure(self.config, exc, seen))
        finally:
            if session is not None:
                self._drop(owner, session)

    def _drop(self, owner: str, session: _Session) -> None:
        if self._sessions.get(owner) is session:
            del self._sessions[owner]
        session.done.set()

    def _make_room(self) -> None:
        """Room for one more session: the least recently used idle one closed at `MAX_SESSIONS` (all busy: refused)."""
        if len(self._sessions) < MAX_SESSIONS:
            return
        idle = [owner for owner, session in self._sessions.items() if session.calls == 0]
        if not idle:
            raise UpstreamUnavailable(self.name, f"all {MAX_SESSIONS} callers' sessions are busy", "try again soon")
        oldest = min(idle, key=lambda owner: self._sessions[owner].used)
        self._drop(oldest, self._sessions[oldest])

    def _close_idle(self) -> None:
        now = time.monotonic()
        for owner, session in list(self._sessions.items()):
            if session.calls == 0 and now - session.used >= IDLE_S:
                self._drop(owner, session)

