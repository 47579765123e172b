"""The shared backend: keys, audit rows, budgets and rate-limit windows in PostgreSQL, for replicas.

asyncpg gives a pool of connections on the event loop (no threads) and PostgreSQL's own binary
protocol; it is the fastest maintained driver for asyncio. The pool is made, and the schema
migrated, on first use; while the server cannot be reached every method raises
`StorageUnavailable` (retrying the connection at most once a second), and callers fail closed.
Rate limits and budgets are checked and booked by one server-side function each, under a lock
per counter, so N calls a minute means N across every replica.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from ..errors import describe_exception
from .base import (
    AUDIT_COLUMNS,
    KEY_COLUMNS,
    SESSION_COLUMNS,
    STATS_ROWS,
    AuditEntry,
    AuditFilter,
    AuditRow,
    Budget,
    ServerStats,
    SharedSession,
    StoredKey,
    Window,
    collect_stats,
    stats_sql,
)
from .errors import StorageUnavailable
from .events import PostgresEvents
from .migrations import TABLE, pending
from .oauth import PostgresOAuth
from .usage import (
    ApprovalCount,
    Bucket,
    Saving,
    approvals_sql,
    book_savings_sql,
    buckets_sql,
    collect_buckets,
    refusals_sql,
    savings_rows,
    savings_sql,
    unread_sql,
)

T = TypeVar("T")
log = structlog.get_logger("mcp_gateway.store")
RETRY_S = 1.0
"""After a failed connection, requests fail at once for this long before the next attempt."""
_MIGRATION_LOCK = 7_407_751_001
CHANNEL = "mcp_gateway"
NOTIFY_BYTES = 7900


def redacted(url: str) -> str:
    """`url` without its password (for logs, errors and `/healthz`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStorage(PostgresOAuth, PostgresEvents):
    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0,
                 query_timeout_s: float = 10.0, synchronous_commit: bool = False) -> None:
        self.url = url
        self.synchronous_commit = synchronous_commit
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self.query_timeout_s = query_timeout_s
        self.name = redacted(url)
        self._pool: asyncpg.Pool | None = None
        self._opening = anyio.Lock()
        self._failed: tuple[float, str] | None = None
        self._applied: list[str] = []
        self._listening = False

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is not None:
                return self._pool
            if self._failed is not None and time.monotonic() - self._failed[0] < RETRY_S:
                raise StorageUnavailable(self._failed[1])
            try:
                pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout_s,
                    command_timeout=self.query_timeout_s,
                    server_settings={"synchronous_commit": "on" if self.synchronous_commit else "off"},
                )
            except Exception as exc:
                reason = f"{self.name}: cannot connect ({describe_exception(exc)})"
                self._failed = (time.monotonic(), reason)
                raise StorageUnavailable(reason) from None
            try:
                async with pool.acquire() as conn:
                    self._applied = await _migrate(conn)
            except Exception as exc:
                await pool.close()
                reason = f"{self.name}: cannot migrate the schema ({describe_exception(exc)})"
                raise StorageUnavailable(reason) from None
            self._pool, self._failed = pool, None
        return self._pool

    async def _run(self, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        pool = await self._get_pool()
        try:
            with anyio.fail_after(self.connect_timeout_s + self.query_timeout_s):
                return await fn(pool)
        except StorageUnavailable:
            raise
        except Exception as exc:
            raise StorageUnavailable(f"{self.name}: {describe_exception(exc)}") from None

    async def migrate(self) -> list[str]:
        await self._get_pool()
        applied, self._applied = self._applied, []
        return applied

    async def add_key(self, key: StoredKey) -> None:
        sql = f"INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        await self._run(lambda p: p.execute(sql, key.name, key.hash, key.team, list(key.groups), key.created,
                                            key.revoked, key.admin))

    async def revoke_key(self, name: str) -> bool:
        sql = "UPDATE keys SET revoked = $1 WHERE name = $2 AND revoked IS NULL"
        status: str = await self._run(lambda p: p.execute(sql, time.time(), name))
        return status != "UPDATE 0"

    async def list_keys(self) -> list[StoredKey]:
        rows = await self._run(lambda p: p.fetch(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY name"))
        return [_key(r) for r in rows]

    async def find_key(self, key_hash: str) -> StoredKey | None:
        sql = f"SELECT {KEY_COLUMNS} FROM keys WHERE hash = $1 AND revoked IS NULL"
        row = await self._run(lambda p: p.fetchrow(sql, key_hash))
        return None if row is None else _key(row)

    async def is_revoked(self, name: str) -> bool:
        sql = "SELECT 1 FROM keys WHERE name = $1 AND revoked IS NOT NULL"
        return await self._run(lambda p: p.fetchval(sql, name)) is not None

    async def has_keys(self) -> bool:
        return await self._run(lambda p: p.fetchval("SELECT 1 FROM keys LIMIT 1")) is not None

    async def write_audit(self, row: AuditRow) -> int:
        values = asdict(row)
        marks = ", ".join(f"${i}" for i in range(1, len(AUDIT_COLUMNS) + 1))
        sql = f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({marks}) RETURNING id"
        return int(await self._run(lambda p: p.fetchval(sql, *(values[c] for c in AUDIT_COLUMNS))))

    async def finish_audit(self, row_id: int, row: AuditRow) -> None:
        values = asdict(row)
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(AUDIT_COLUMNS, 1))
        sql = f"UPDATE audit SET {sets} WHERE id = ${len(AUDIT_COLUMNS) + 1}"
        await self._run(lambda p: p.execute(sql, *(values[c] for c in AUDIT_COLUMNS), row_id))

    async def prune(self, before: float, counters_before: float) -> int:
        async def run(pool: asyncpg.Pool) -> int:
            await pool.execute("DELETE FROM budgets WHERE updated < $1", counters_before)
            await pool.execute("DELETE FROM sessions WHERE created < $1", counters_before)
            await pool.execute("DELETE FROM state WHERE expires < $1", time.time())
            await pool.execute("DELETE FROM token_savings WHERE day < $1", before)
            await pool.execute("DELETE FROM upstream_events WHERE ts < $1", max(before, counters_before))
            status: str = await pool.execute("DELETE FROM audit WHERE ts < $1", before)
            return int(status.split()[-1])

        return await self._run(run)

    async def query_audit(self, *, key: str | None = None, tool: str | None = None, since: float | None = None,
                          limit: int = 1000) -> list[AuditRow]:
        newest = await self.audit_page(AuditFilter(key=key, tool=tool, since=since), limit=limit)
        return [entry.row for entry in reversed(newest)]

    async def audit_page(self, where: AuditFilter, *, before: int | None = None, after: int | None = None,
                         limit: int = 50) -> list[AuditEntry]:
        clauses, params = where.sql(lambda n: f"${n}")
        if after is not None or before is not None:
            params.append(after if after is not None else before)
            clauses.append(f"id {'>' if after is not None else '<'} ${len(params)}")
        order = "ASC" if after is not None else "DESC"
        sql = (f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit WHERE {' AND '.join(clauses) or 'true'} "
               f"ORDER BY id {order} LIMIT ${len(params) + 1}")
        rows = await self._run(lambda p: p.fetch(sql, *params, limit))
        entries = [_entry(r) for r in rows]
        return entries[::-1] if after is not None else entries

    async def audit_of_executions(self, execution_ids: Sequence[str], limit: int = 2000) -> list[AuditEntry]:
        if not execution_ids:
            return []
        sql = (f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit WHERE execution_id = ANY($1::text[]) "
               "AND kind <> 'meta' ORDER BY id LIMIT $2")
        rows = await self._run(lambda p: p.fetch(sql, list(execution_ids), limit))
        return [_entry(r) for r in rows]

    async def server_stats(self, since: float) -> list[ServerStats]:
        sql = stats_sql(lambda n: f"${n}")
        rows = await self._run(lambda p: p.fetch(sql, since, STATS_ROWS))
        return collect_stats(tuple(r.values()) for r in rows)

    async def usage_buckets(self, since: float, width: float) -> tuple[list[Bucket], float | None]:
        rows = await self._run(lambda p: p.fetch(buckets_sql(_mark, _whole), since, width, STATS_ROWS))
        unread = await self._run(lambda p: p.fetchval(unread_sql(_mark), STATS_ROWS))
        return collect_buckets(tuple(r.values()) for r in rows), unread if unread and unread >= since else None

    async def approval_counts(self, since: float, width: float) -> list[ApprovalCount]:
        rows = await self._run(lambda p: p.fetch(approvals_sql(_mark, _whole), since, width))
        return [ApprovalCount(int(r["b"]), str(r["decision"]), int(r["n"])) for r in rows]

    async def quota_refusals(self, since: float) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in await self._run(lambda p: p.fetch(refusals_sql(_mark), since))}

    async def counter_use(self, rate_keys: Sequence[str], since: float, budget_keys: Sequence[str]) -> dict[str, float]:
        sql = ("SELECT key, COUNT(*)::float8 FROM rate_events WHERE key = ANY($1::text[]) AND ts > $2 GROUP BY key "
               "UNION ALL SELECT key, spent FROM budgets WHERE key = ANY($3::text[])")
        return {r[0]: float(r[1]) for r in await self._run(lambda p: p.fetch(sql, [*rate_keys], since, [*budget_keys]))}

    async def book_savings(self, rows: Sequence[Saving]) -> None:
        await self._run(lambda p: p.executemany(book_savings_sql(_mark), savings_rows(rows)))

    async def savings(self, since: float) -> list[Saving]:
        return [Saving(*r.values()) for r in await self._run(lambda p: p.fetch(savings_sql(_mark), since))]

    async def save_session(self, session: SharedSession) -> None:
        sql = (f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE "
               "SET owner = excluded.owner, protocol_version = excluded.protocol_version, client = excluded.client")
        await self._run(lambda p: p.execute(sql, session.id, session.owner, session.protocol_version, session.client,
                                            session.created))

    async def find_session(self, session_id: str) -> SharedSession | None:
        row = await self._run(lambda p: p.fetchrow(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1",
                                                   session_id))
        return None if row is None else SharedSession(*row.values())

    async def drop_session(self, session_id: str) -> None:
        await self._run(lambda p: p.execute("DELETE FROM sessions WHERE id = $1", session_id))

    async def put_state(self, key: str, owner: str, body: str, expires: float) -> None:
        sql = ("INSERT INTO state VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE "
               "SET owner = excluded.owner, body = excluded.body, expires = excluded.expires")
        await self._run(lambda p: p.execute(sql, key, owner, body, expires))

    async def get_state(self, key: str, owner: str) -> str | None:
        sql = "SELECT body FROM state WHERE key = $1 AND owner = $2 AND expires > $3"
        found = await self._run(lambda p: p.fetchval(sql, key, owner, time.time()))
        return None if found is None else str(found)

    async def take_state(self, key: str, owner: str) -> str | None:
        sql = "DELETE FROM state WHERE key = $1 AND owner = $2 AND expires > $3 RETURNING body"
        found = await self._run(lambda p: p.fetchval(sql, key, owner, time.time()))
        return None if found is None else str(found)

    async def publish(self, message: str) -> None:
        """NOTIFY carries up to 8000 bytes; a longer message goes through the `messages` table."""
        if len(message.encode()) <= NOTIFY_BYTES:
            await self._run(lambda p: p.execute("SELECT pg_notify($1, $2)", CHANNEL, message))
            return

        async def run(pool: asyncpg.Pool) -> None:
            row_id = await pool.fetchval("INSERT INTO messages (body, created) VALUES ($1, $2) RETURNING id",
                                         message, time.time())
            await pool.execute("DELETE FROM messages WHERE created < $1", time.time() - 300)
            await pool.execute("SELECT pg_notify($1, $2)", CHANNEL, f"#{row_id}")

        await self._run(run)

    async def listen(self, deliver: Callable[[str], Awaitable[None]]) -> None:
        while True:
            try:
                await self._listen_once(deliver)
            except Exception as exc:
                log.warning("store notifications lost: reconnecting", error=describe_exception(exc))
            await anyio.sleep(RETRY_S)

    @property
    def listening(self) -> bool:
        return self._listening

    async def _listen_once(self, deliver: Callable[[str], Awaitable[None]]) -> None:
        await self._get_pool()  # the schema (and its messages table) exists
        conn = await asyncpg.connect(self.url, timeout=self.connect_timeout_s)
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=10_000)

        def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            with contextlib.suppress(anyio.WouldBlock):  # a burst beyond the buffer is dropped, not queued forever
                send.send_nowait(str(payload))

        try:
            await conn.add_listener(CHANNEL, on_notify)
            self._listening = True
            while True:
                payload = None
                with anyio.move_on_after(5):
                    payload = await receive.receive()
                if payload is None:
                    await conn.execute("SELECT 1")  # a lost connection shows within 5 s
                    continue
                body = payload if not payload.startswith("#") else await conn.fetchval(
                    "SELECT body FROM messages WHERE id = $1", int(payload[1:]))
                if body is not None:
                    await deliver(body)
        finally:
            self._listening = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await conn.close()

    async def take(self, windows: Sequence[Window], now: float) -> tuple[Window, float] | None:
        if not windows:
            return None
        row = await self._run(lambda p: p.fetchrow(
            "SELECT hit, wait_s FROM gw_take($1::text[], $2::integer[], $3::double precision[], $4)",
            [w.key for w in windows], [w.limit for w in windows], [w.seconds for w in windows], now))
        return None if row is None else (windows[row["hit"]], float(row["wait_s"]))

    async def charge(self, budgets: Sequence[Budget], amount: float) -> tuple[Budget, float] | None:
        if not budgets:
            return None
        row = await self._run(lambda p: p.fetchrow(
            "SELECT hit, have FROM gw_charge($1::text[], $2::double precision[], $3, $4)",
            [b.key for b in budgets], [b.budget for b in budgets], amount, time.time()))
        return None if row is None else (budgets[row["hit"]], float(row["have"]))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.move_on_after(5) as scope:
                await pool.close()
            if scope.cancelled_caught:
                pool.terminate()


async def _migrate(conn: PoolConnectionProxy[asyncpg.Record]) -> list[str]:
    done = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (version integer PRIMARY KEY, name text NOT NULL, "
                           "applied double precision NOT NULL)")
        applied = {r["version"] for r in await conn.fetch(f"SELECT version FROM {TABLE}")}
        for m in pending("postgres", applied):
            await conn.execute(m.sql)
            await conn.execute(f"INSERT INTO {TABLE} VALUES ($1, $2, $3)", m.version, m.name, time.time())
            done.append(m.label)
    return done


def _mark(n: int) -> str:
    return f"${n}"


def _whole(expr: str) -> str:
    """A bucket's number: the floor (a cast alone would round to the nearest)."""
    return f"floor({expr})::integer"


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(int(row["id"]), AuditRow(**{c: row[c] for c in AUDIT_COLUMNS}))


def _key(row: Any) -> StoredKey:
    return StoredKey(row["name"], row["hash"], row["team"], tuple(row["groups"]), row["created"], row["revoked"],
                     bool(row["admin"]))
