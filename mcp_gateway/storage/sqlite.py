"""The embedded backend: keys, the audit log, budgets and rate-limit windows in one SQLite file.

SQLite runs in WAL mode; every audit row is committed before the call it records is answered,
so killing the process loses nothing that a client already saw. Every query runs in a worker
thread (one connection, one lock), so a database held by another process never stalls the
event loop. One node only: several processes may share the file (the CLI does), several
replicas need PostgreSQL.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

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
from .events import SQLiteEvents
from .migrations import TABLE, pending
from .oauth import SQLiteOAuth
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


class SQLiteStorage(SQLiteOAuth, SQLiteEvents):
    """The file is opened (and migrated) on first use, so constructing one has no side effect."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"sqlite:{self.path}"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._applied: list[str] = []

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(partial(self._locked, fn))

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._db)
            except (sqlite3.Error, OSError) as exc:
                raise StorageUnavailable(f"{self.name}: {exc}") from exc
            except StorageUnavailable as exc:
                raise StorageUnavailable(f"{self.name}: {exc}") from None

    @property
    def _db(self) -> sqlite3.Connection:
        """The open connection (call with the lock held)."""
        if self._conn is None:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=5000")
                self._applied = _migrate(db)
            except BaseException:
                db.close()
                raise
            self._conn = db
        return self._conn

    async def migrate(self) -> list[str]:
        await self._call(lambda db: None)
        applied, self._applied = self._applied, []
        return applied

    async def add_key(self, key: StoredKey) -> None:
        row = (key.name, key.hash, key.team, json.dumps(list(key.groups)), key.created, key.revoked, int(key.admin))
        await self._call(lambda db: db.execute(f"INSERT INTO keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row))

    async def revoke_key(self, name: str) -> bool:
        sql = "UPDATE keys SET revoked = ? WHERE name = ? AND revoked IS NULL"
        return await self._call(lambda db: db.execute(sql, (time.time(), name)).rowcount > 0)

    async def list_keys(self) -> list[StoredKey]:
        rows = await self._call(lambda db: db.execute(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY name").fetchall())
        return [_key(r) for r in rows]

    async def find_key(self, key_hash: str) -> StoredKey | None:
        sql = f"SELECT {KEY_COLUMNS} FROM keys WHERE hash = ? AND revoked IS NULL"
        rows = await self._call(lambda db: db.execute(sql, (key_hash,)).fetchall())
        return _key(rows[0]) if rows else None

    async def is_revoked(self, name: str) -> bool:
        sql = "SELECT 1 FROM keys WHERE name = ? AND revoked IS NOT NULL"
        return await self._call(lambda db: db.execute(sql, (name,)).fetchone() is not None)

    async def has_keys(self) -> bool:
        return await self._call(lambda db: db.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None)

    async def write_audit(self, row: AuditRow) -> int:
        values = asdict(row)
        sql = f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' for _ in AUDIT_COLUMNS)})"
        return await self._call(lambda db: int(db.execute(sql, [values[c] for c in AUDIT_COLUMNS]).lastrowid or 0))

    async def finish_audit(self, row_id: int, row: AuditRow) -> None:
        values = asdict(row)
        sql = f"UPDATE audit SET {', '.join(f'{c} = ?' for c in AUDIT_COLUMNS)} WHERE id = ?"
        await self._call(lambda db: db.execute(sql, [*(values[c] for c in AUDIT_COLUMNS), row_id]))

    async def prune(self, before: float, counters_before: float) -> int:
        def run(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM budgets WHERE updated < ?", (counters_before,))
            db.execute("DELETE FROM sessions WHERE created < ?", (counters_before,))
            db.execute("DELETE FROM state WHERE expires < ?", (time.time(),))
            db.execute("DELETE FROM token_savings WHERE day < ?", (before,))
            db.execute("DELETE FROM upstream_events WHERE ts < ?", (max(before, counters_before),))
            return int(db.execute("DELETE FROM audit WHERE ts < ?", (before,)).rowcount)

        return await self._call(run)

    async def query_audit(self, *, key: str | None = None, tool: str | None = None, since: float | None = None,
                          limit: int = 1000) -> list[AuditRow]:
        newest = await self.audit_page(AuditFilter(key=key, tool=tool, since=since), limit=limit)
        return [entry.row for entry in reversed(newest)]

    async def audit_page(self, where: AuditFilter, *, before: int | None = None, after: int | None = None,
                         limit: int = 50) -> list[AuditEntry]:
        clauses, params = where.sql(lambda n: "?")
        if after is not None:
            clauses.append("id > ?")
            params.append(after)
        elif before is not None:
            clauses.append("id < ?")
            params.append(before)
        order = "ASC" if after is not None else "DESC"
        # `+ts`: never the ts index here, whose order is not the page's; the newest rows come first by id
        condition = " AND ".join("+" + c if c.startswith("ts ") else c for c in clauses) or "1 = 1"
        sql = f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit WHERE {condition} ORDER BY id {order} LIMIT ?"
        rows = await self._call(lambda db: db.execute(sql, [*params, limit]).fetchall())
        entries = [_entry(r) for r in rows]
        return entries[::-1] if after is not None else entries

    async def audit_of_executions(self, execution_ids: Sequence[str], limit: int = 2000) -> list[AuditEntry]:
        if not execution_ids:
            return []
        marks = ", ".join("?" for _ in execution_ids)
        sql = (f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit WHERE execution_id IN ({marks}) "
               "AND kind <> 'meta' ORDER BY id LIMIT ?")
        rows = await self._call(lambda db: db.execute(sql, [*execution_ids, limit]).fetchall())
        return [_entry(r) for r in rows]

    async def server_stats(self, since: float) -> list[ServerStats]:
        sql = stats_sql(lambda n: "?")
        return collect_stats(await self._call(lambda db: db.execute(sql, (since, STATS_ROWS)).fetchall()))

    async def usage_buckets(self, since: float, width: float) -> tuple[list[Bucket], float | None]:
        def run(db: sqlite3.Connection) -> tuple[list[Bucket], float | None]:
            rows = db.execute(buckets_sql(_mark, _whole), (since, width, STATS_ROWS)).fetchall()
            unread = db.execute(unread_sql(_mark), (STATS_ROWS,)).fetchone()
            return collect_buckets(rows), unread[0] if unread and unread[0] >= since else None

        return await self._call(run)

    async def approval_counts(self, since: float, width: float) -> list[ApprovalCount]:
        sql = approvals_sql(_mark, _whole)
        return [ApprovalCount(int(b), str(d), int(n))
                for b, d, n in await self._call(lambda db: db.execute(sql, (since, width)).fetchall())]

    async def quota_refusals(self, since: float) -> dict[str, int]:
        return dict(await self._call(lambda db: db.execute(refusals_sql(_mark), (since,)).fetchall()))

    async def counter_use(self, rate_keys: Sequence[str], since: float, budget_keys: Sequence[str]) -> dict[str, float]:
        def run(db: sqlite3.Connection) -> dict[str, float]:
            rates = ", ".join("?" for _ in rate_keys)
            budgets = ", ".join("?" for _ in budget_keys)
            found = db.execute(f"SELECT key, COUNT(*) FROM rate_events WHERE key IN ({rates}) AND ts > ? GROUP BY key",
                               (*rate_keys, since)).fetchall()
            found += db.execute(f"SELECT key, spent FROM budgets WHERE key IN ({budgets})", budget_keys).fetchall()
            return {str(k): float(v) for k, v in found}

        return await self._call(run)

    async def book_savings(self, rows: Sequence[Saving]) -> None:
        sql = book_savings_sql(_mark)
        await self._call(partial(_transaction, lambda db: db.executemany(sql, savings_rows(rows))))

    async def savings(self, since: float) -> list[Saving]:
        found = await self._call(lambda db: db.execute(savings_sql(_mark), (since,)).fetchall())
        return [Saving(*row) for row in found]

    async def save_session(self, session: SharedSession) -> None:
        row = (session.id, session.owner, session.protocol_version, session.client, session.created)
        await self._call(lambda db: db.execute(f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) "
                                               "VALUES (?, ?, ?, ?, ?)", row))

    async def find_session(self, session_id: str) -> SharedSession | None:
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
        found = await self._call(lambda db: db.execute(sql, (session_id,)).fetchone())
        return None if found is None else SharedSession(*found)

    async def drop_session(self, session_id: str) -> None:
        await self._call(lambda db: db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)))

    async def put_state(self, key: str, owner: str, body: str, expires: float) -> None:
        await self._call(lambda db: db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
                                               (key, owner, body, expires)))

    async def get_state(self, key: str, owner: str) -> str | None:
        sql = "SELECT body FROM state WHERE key = ? AND owner = ? AND expires > ?"
        found = await self._call(lambda db: db.execute(sql, (key, owner, time.time())).fetchone())
        return None if found is None else str(found[0])

    async def take_state(self, key: str, owner: str) -> str | None:
        sql = "DELETE FROM state WHERE key = ? AND owner = ? AND expires > ? RETURNING body"
        found = await self._call(lambda db: db.execute(sql, (key, owner, time.time())).fetchone())
        return None if found is None else str(found[0])

    async def publish(self, message: str) -> None:
        """One node: every session is served here, so there is no one else to tell."""

    async def listen(self, deliver: Callable[[str], Awaitable[None]]) -> None:
        await anyio.sleep_forever()

    @property
    def listening(self) -> bool:
        return True

    async def take(self, windows: Sequence[Window], now: float) -> tuple[Window, float] | None:
        def run(db: sqlite3.Connection) -> tuple[Window, float] | None:
            for w in windows:
                db.execute("DELETE FROM rate_events WHERE key = ? AND ts <= ?", (w.key, now - w.seconds))
                count, oldest = db.execute("SELECT count(*), min(ts) FROM rate_events WHERE key = ?",
                                           (w.key,)).fetchone()
                if count >= w.limit:
                    return w, oldest + w.seconds - now
            db.executemany("INSERT INTO rate_events (key, ts) VALUES (?, ?)", [(w.key, now) for w in windows])
            return None

        return await self._call(partial(_transaction, run)) if windows else None

    async def charge(self, budgets: Sequence[Budget], amount: float) -> tuple[Budget, float] | None:
        def run(db: sqlite3.Connection) -> tuple[Budget, float] | None:
            for b in budgets:
                found = db.execute("SELECT spent FROM budgets WHERE key = ?", (b.key,)).fetchone()
                spent = found[0] if found else 0.0
                if spent + amount > b.budget + 1e-12:
                    return b, spent
            db.executemany("INSERT INTO budgets (key, spent, updated) VALUES (?, ?, ?) ON CONFLICT (key) "
                           "DO UPDATE SET spent = spent + excluded.spent, updated = excluded.updated",
                           [(b.key, amount, time.time()) for b in budgets])
            return None

        return await self._call(partial(_transaction, run)) if budgets else None

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _transaction(fn: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
    """`fn` in one write transaction, taken before reading (so two processes cannot both see room)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _migrate(db: sqlite3.Connection) -> list[str]:
    def run(db: sqlite3.Connection) -> list[str]:
        db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                   "applied REAL NOT NULL)")
        applied = {v for (v,) in db.execute(f"SELECT version FROM {TABLE}")}
        if not applied and "admin" in {r[1] for r in db.execute("PRAGMA table_info(keys)")}:
            applied = {1, 2}  # made before versioned migrations, with admin keys: already at version 2
            db.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?)",
                           [(1, "keys_and_audit", time.time()), (2, "admin_keys", time.time())])
        done = []
        for m in pending("sqlite", applied):
            for statement in _statements(m.sql):
                db.execute(statement)
            db.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?)", (m.version, m.name, time.time()))
            done.append(m.label)
        return done

    return _transaction(run, db)


def _statements(sql: str) -> list[str]:
    """A migration's statements (`;` at a line's end ends one; comments are dropped)."""
    lines = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", lines, flags=re.M) if s.strip()]


def _mark(n: int) -> str:
    """The n-th parameter, numbered: the usage queries use their window's start twice."""
    return f"?{n}"


def _whole(expr: str) -> str:
    """A bucket's number: truncation, which is its floor here (rows are at or after the window's start)."""
    return f"CAST({expr} AS INTEGER)"


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(int(row[0]), AuditRow(**dict(zip(AUDIT_COLUMNS, row[1:], strict=True))))


def _key(row: tuple[Any, ...]) -> StoredKey:
    name, key_hash, team, groups, created, revoked, admin = row
    return StoredKey(name, key_hash, team, tuple(json.loads(groups)), created, revoked, bool(admin))
