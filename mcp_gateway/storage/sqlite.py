"""The embedded backend: keys and the audit log in one SQLite file in the state directory.

SQLite runs in WAL mode; every audit row is committed before the call it records is answered,
so killing the process loses nothing that a client already saw.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .base import AuditRow, StoredKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, team TEXT, groups TEXT NOT NULL,
    created REAL NOT NULL, revoked REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, key TEXT NOT NULL, team TEXT, endpoint TEXT NOT NULL,
    kind TEXT NOT NULL, server TEXT, tool TEXT NOT NULL, outcome TEXT NOT NULL, latency_ms REAL NOT NULL,
    arg_bytes INTEGER NOT NULL, result_bytes INTEGER NOT NULL, error TEXT, arguments TEXT,
    execution_id TEXT, approval TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
"""
_AUDIT_COLUMNS = tuple(AuditRow.__dataclass_fields__)


class SQLiteStorage:
    """One connection shared by threads under a lock; callers run it off the event loop.

    The file is opened on first use, so constructing one has no side effect.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """The open connection (call with the lock held)."""
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            if "admin" not in {row[1] for row in db.execute("PRAGMA table_info(keys)")}:
                db.execute("ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")  # before admin keys
            self._conn = db
        return self._conn

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def add_key(self, key: StoredKey) -> None:
        self._run(
            "INSERT INTO keys (name, hash, team, groups, created, revoked, admin) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key.name, key.hash, key.team, json.dumps(list(key.groups)), key.created, key.revoked, int(key.admin)),
        )

    def revoke_key(self, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE keys SET revoked = ? WHERE name = ? AND revoked IS NULL",
                                   (time.time(), name))
            return cur.rowcount > 0

    def list_keys(self) -> list[StoredKey]:
        return [_key(r) for r in self._run(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY name")]

    def find_key(self, key_hash: str) -> StoredKey | None:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM keys WHERE hash = ? AND revoked IS NULL", (key_hash,))
        return _key(rows[0]) if rows else None

    def is_revoked(self, name: str) -> bool:
        return bool(self._run("SELECT 1 FROM keys WHERE name = ? AND revoked IS NOT NULL", (name,)))

    def has_keys(self) -> bool:
        return bool(self._run("SELECT 1 FROM keys LIMIT 1"))

    def write_audit(self, row: AuditRow) -> int:
        values = asdict(row)
        marks = ", ".join("?" for _ in _AUDIT_COLUMNS)
        with self._lock:
            cur = self._db.execute(f"INSERT INTO audit ({', '.join(_AUDIT_COLUMNS)}) VALUES ({marks})",
                                   [values[c] for c in _AUDIT_COLUMNS])
            return int(cur.lastrowid or 0)

    def finish_audit(self, row_id: int, row: AuditRow) -> None:
        values = asdict(row)
        sets = ", ".join(f"{c} = ?" for c in _AUDIT_COLUMNS)
        self._run(f"UPDATE audit SET {sets} WHERE id = ?", [*(values[c] for c in _AUDIT_COLUMNS), row_id])

    def prune_audit(self, before: float) -> int:
        with self._lock:
            return int(self._db.execute("DELETE FROM audit WHERE ts < ?", (before,)).rowcount)

    def query_audit(self, *, key: str | None = None, tool: str | None = None, since: float | None = None,
                    limit: int = 1000) -> list[AuditRow]:
        where, params = ["1 = 1"], []
        for clause, value in (("key = ?", key), ("tool = ?", tool), ("ts >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        cols = ", ".join(_AUDIT_COLUMNS)
        sql = f"SELECT {cols} FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = self._run(sql, [*params, limit])
        return [AuditRow(**dict(zip(_AUDIT_COLUMNS, r, strict=True))) for r in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_KEY_COLUMNS = "name, hash, team, groups, created, revoked, admin"


def _key(row: tuple[Any, ...]) -> StoredKey:
    name, key_hash, team, groups, created, revoked, admin = row
    return StoredKey(name, key_hash, team, tuple(json.loads(groups)), created, revoked, bool(admin))


def open_storage(state_dir: str | Path) -> SQLiteStorage:
    return SQLiteStorage(Path(state_dir) / "gateway.db")
