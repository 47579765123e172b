"""Upstream state changes in the store: what the dashboard's upstreams page lists as each upstream's
recent history (connected, failed and why, reconnects scheduled), from every replica.

Upstream state itself lives in each process's memory (every replica holds its own sessions), so a page
served by one replica could only tell its own story, and a restart would forget it; in the store the
history of every replica is on every replica's page and outlives a crash loop. The gateway books events
in memory and writes them in batches (`upstream_history.py`), so a store that is down never slows or
fails an upstream's connection loop.

Mixed into each backend as `oauth.py`'s methods are: SQLite's run in its worker thread through `_call`,
PostgreSQL's on the pool through `_run`, both raising `StorageUnavailable`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import astuple, dataclass
from typing import Protocol, TypeVar

import asyncpg

T = TypeVar("T")

EVENT_COLUMNS = "ts, server, replica, event, detail"


@dataclass(frozen=True)
class UpstreamEvent:
    """One change of an upstream's state in one process (`event`: ready, failed, retrying, stopped,
    disabled), with its detail (the failure's reason, the tools listed, the reconnect's delay)."""

    ts: float
    server: str
    replica: str | None
    event: str
    detail: str | None = None


class EventRecords(Protocol):
    """Upstream state changes (part of `Storage`)."""

    async def add_upstream_events(self, events: Sequence[UpstreamEvent]) -> None:
        """Store a batch of events."""
        ...

    async def upstream_events(self, servers: Sequence[str], limit: int) -> list[UpstreamEvent]:
        """The newest `limit` events of each of `servers` (every replica's), by server, newest first."""
        ...


_ADD = f"INSERT INTO upstream_events ({EVENT_COLUMNS}) VALUES "
_ONE = f"SELECT {EVENT_COLUMNS} FROM upstream_events WHERE server = ? ORDER BY ts DESC, id DESC LIMIT ?"
_EACH = f"""
    SELECT e.ts, e.server, e.replica, e.event, e.detail
    FROM unnest($1::text[]) WITH ORDINALITY AS s(name, n)
    CROSS JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM upstream_events WHERE server = s.name
                        ORDER BY ts DESC, id DESC LIMIT $2) AS e
    ORDER BY s.n, e.ts DESC"""
"""One round trip for every server, each an index range read of its newest rows (`upstream_events_server_ts`)."""


class _InThread(Protocol):
    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


class _OnPool(Protocol):
    async def _run(self, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T: ...


class SQLiteEvents:
    """`EventRecords` on SQLite (one statement per server: each an index read, all in one thread hop)."""

    async def add_upstream_events(self: _InThread, events: Sequence[UpstreamEvent]) -> None:
        rows = [astuple(e) for e in events]
        await self._call(lambda db: db.executemany(_ADD + "(?, ?, ?, ?, ?)", rows))

    async def upstream_events(self: _InThread, servers: Sequence[str], limit: int) -> list[UpstreamEvent]:
        def run(db: sqlite3.Connection) -> list[UpstreamEvent]:
            return [UpstreamEvent(*row) for s in servers for row in db.execute(_ONE, (s, limit)).fetchall()]

        return await self._call(run) if servers else []


class PostgresEvents:
    """`EventRecords` on PostgreSQL."""

    async def add_upstream_events(self: _OnPool, events: Sequence[UpstreamEvent]) -> None:
        rows = [astuple(e) for e in events]
        await self._run(lambda p: p.executemany(_ADD + "($1, $2, $3, $4, $5)", rows))

    async def upstream_events(self: _OnPool, servers: Sequence[str], limit: int) -> list[UpstreamEvent]:
        if not servers:
            return []
        rows = await self._run(lambda p: p.fetch(_EACH, list(servers), limit))
        return [UpstreamEvent(*r.values()) for r in rows]
