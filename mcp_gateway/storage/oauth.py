"""OAuth to upstream servers in the store: the client registration the gateway holds at each upstream's
authorization server, and the tokens granted to it there, one grant per (server, owner).

The store only ever holds these sealed (`oauth/vault.py`): the bytes are opaque here, so a dump of the
store, a backup or a query log holds no usable token, and `GrantInfo` (what `mcp-gateway auth list`
shows) carries no sealed bytes at all.

The methods are mixed into each backend from here, which keeps the backends' files short; they are
written as the backends' own are (SQLite's in its worker thread through `_call`, PostgreSQL's on the
pool through `_run`, both raising `StorageUnavailable`), with one SQL text for both backends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import anyio
import asyncpg

from .errors import StorageUnavailable

T = TypeVar("T")
LOCK_WAIT_S = 15.0
"""How long `exclusive` waits for a critical section of the same name to end (a token refresh takes well under
it: its token request has a 10 s deadline, `oauth.fetch.DEADLINE_S`)."""


@dataclass(frozen=True)
class GrantInfo:
    """A stored grant without its tokens: for which upstream, whose ("" the shared identity, else a caller
    such as `user:<sub>` or `key:<name>`), and when it was last written (a refresh rewrites it)."""

    server: str
    owner: str
    updated: float


class OAuthRecords(Protocol):
    """Sealed OAuth client registrations and grants (part of `Storage`)."""

    async def get_oauth_client(self, server: str) -> bytes | None:
        """The sealed client registration for `server`'s authorization server, if one was stored."""
        ...

    async def put_oauth_client(self, server: str, sealed: bytes) -> None:
        """Store (or replace) the sealed client registration for `server`."""
        ...

    async def delete_oauth_client(self, server: str) -> bool:
        """Forget `server`'s client registration; whether there was one."""
        ...

    async def get_grant(self, server: str, owner: str) -> bytes | None:
        """`owner`'s sealed tokens for `server`, if any."""
        ...

    async def put_grant(self, server: str, owner: str, sealed: bytes) -> None:
        """Store (or replace) `owner`'s sealed tokens for `server`, stamped with the time now."""
        ...

    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold `name` against every task and process on this store for a short critical section (a token
        refresh, so two replicas never spend the same refresh token); raises `StorageUnavailable` after
        `LOCK_WAIT_S`. Each name is its own lock: holding one never delays another."""
        ...

    async def list_grants(self) -> list[GrantInfo]:
        """Every grant, by server then owner, without its tokens."""
        ...

    async def delete_grants(self, server: str | None = None, owner: str | None = None) -> int:
        """Delete the grants of `server` and of `owner` (None: any; both None: every grant); returns how many."""
        ...


_SQL = {
    "get_client": "SELECT sealed FROM oauth_clients WHERE server = {0}",
    "put_client": ("INSERT INTO oauth_clients (server, sealed, updated) VALUES ({0}, {1}, {2}) "
                   "ON CONFLICT (server) DO UPDATE SET sealed = excluded.sealed, updated = excluded.updated"),
    "delete_client": "DELETE FROM oauth_clients WHERE server = {0}",
    "get_grant": "SELECT sealed FROM oauth_grants WHERE server = {0} AND owner = {1}",
    "put_grant": ("INSERT INTO oauth_grants (server, owner, sealed, updated) VALUES ({0}, {1}, {2}, {3}) "
                  "ON CONFLICT (server, owner) DO UPDATE SET sealed = excluded.sealed, updated = excluded.updated"),
    "list_grants": "SELECT server, owner, updated FROM oauth_grants ORDER BY server, owner",
}


def _spelled(mark: Callable[[int], str]) -> dict[str, str]:
    """`_SQL` with a backend's placeholders (`mark(n)` is the n-th, from 1)."""
    return {name: sql.format(*(mark(n) for n in range(1, 5))) for name, sql in _SQL.items()}


def _delete_grants_sql(server: str | None, owner: str | None, mark: Callable[[int], str]) -> tuple[str, list[str]]:
    clauses: list[str] = []
    params: list[str] = []
    for column, value in (("server", server), ("owner", owner)):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = {mark(len(params))}")
    return f"DELETE FROM oauth_grants WHERE {' AND '.join(clauses) or '1 = 1'}", params


_LITE = _spelled(lambda n: f"?{n}")
_PG = _spelled(lambda n: f"${n}")


class _InThread(Protocol):
    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


class _OnPool(Protocol):
    name: str

    async def _run(self, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T: ...
    async def _get_pool(self) -> asyncpg.Pool: ...
    def _advisory(self, name: str, deadline: float) -> contextlib.AbstractAsyncContextManager[None]: ...


class _OnFile(Protocol):
    path: Path
    name: str


class _LocalLocks:
    """One in-process lock per (store, name), kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[anyio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, store: str, name: str, deadline: float) -> AsyncIterator[None]:
        key = (store, name)
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or anyio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0.0)):
                    await lock.acquire()
            except TimeoutError:
                raise StorageUnavailable(f"{name} is held by another task of this process for over "
                                         f"{LOCK_WAIT_S:g} s") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]


_LOCAL = _LocalLocks()


def lock_file(database: Path, name: str) -> Path:
    """The file `name` is locked on, in `<stem>.locks/` beside the database (`gateway.locks/` for `gateway.db`:
    not matched by `gateway.db*`, which is the store's own files): the name made safe for a path, and its
    digest (names that differ only in unsafe characters get different files)."""
    folder = database.with_name(database.stem + ".locks")
    folder = database.with_name(database.name + ".locks") if folder == database else folder
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:64]
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return folder / f"{safe}-{digest}.lock"


class SQLiteOAuth:
    """`OAuthRecords` for `SQLiteStorage`."""

    async def get_oauth_client(self: _InThread, server: str) -> bytes | None:
        found = await self._call(lambda db: db.execute(_LITE["get_client"], (server,)).fetchone())
        return None if found is None else bytes(found[0])

    async def put_oauth_client(self: _InThread, server: str, sealed: bytes) -> None:
        await self._call(lambda db: db.execute(_LITE["put_client"], (server, sealed, time.time())))

    async def delete_oauth_client(self: _InThread, server: str) -> bool:
        return await self._call(lambda db: db.execute(_LITE["delete_client"], (server,)).rowcount > 0)

    async def get_grant(self: _InThread, server: str, owner: str) -> bytes | None:
        found = await self._call(lambda db: db.execute(_LITE["get_grant"], (server, owner)).fetchone())
        return None if found is None else bytes(found[0])

    async def put_grant(self: _InThread, server: str, owner: str, sealed: bytes) -> None:
        await self._call(lambda db: db.execute(_LITE["put_grant"], (server, owner, sealed, time.time())))

    async def list_grants(self: _InThread) -> list[GrantInfo]:
        rows = await self._call(lambda db: db.execute(_LITE["list_grants"]).fetchall())
        return [GrantInfo(str(s), str(o), float(u)) for s, o, u in rows]

    async def delete_grants(self: _InThread, server: str | None = None, owner: str | None = None) -> int:
        sql, params = _delete_grants_sql(server, owner, lambda n: f"?{n}")
        return await self._call(lambda db: int(db.execute(sql, params).rowcount))

    @contextlib.asynccontextmanager
    async def exclusive(self: _OnFile, name: str) -> AsyncIterator[None]:
        """An in-process lock for `name`, then an advisory lock on `name`'s own file (`lock_file`) beside the
        database (against other processes on the file). The files stay: removing a lock file
        while another process waits on it would let two hold `name`."""
        deadline = time.monotonic() + LOCK_WAIT_S
        memory = str(self.path) == ":memory:"
        async with _LOCAL.hold(f"memory:{id(self)}" if memory else self.name, name, deadline):
            if memory:
                yield
                return
            path = lock_file(self.path, name)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise StorageUnavailable(f"{name} is held by another process on this store for over "
                                                     f"{LOCK_WAIT_S:g} s") from None
                        await anyio.sleep(0.02)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class PostgresOAuth:
    """`OAuthRecords` for `PostgresStorage`."""

    async def get_oauth_client(self: _OnPool, server: str) -> bytes | None:
        found = await self._run(lambda p: p.fetchval(_PG["get_client"], server))
        return None if found is None else bytes(found)

    async def put_oauth_client(self: _OnPool, server: str, sealed: bytes) -> None:
        await self._run(lambda p: p.execute(_PG["put_client"], server, sealed, time.time()))

    async def delete_oauth_client(self: _OnPool, server: str) -> bool:
        status: str = await self._run(lambda p: p.execute(_PG["delete_client"], server))
        return status != "DELETE 0"

    async def get_grant(self: _OnPool, server: str, owner: str) -> bytes | None:
        found = await self._run(lambda p: p.fetchval(_PG["get_grant"], server, owner))
        return None if found is None else bytes(found)

    async def put_grant(self: _OnPool, server: str, owner: str, sealed: bytes) -> None:
        await self._run(lambda p: p.execute(_PG["put_grant"], server, owner, sealed, time.time()))

    async def list_grants(self: _OnPool) -> list[GrantInfo]:
        rows = await self._run(lambda p: p.fetch(_PG["list_grants"]))
        return [GrantInfo(str(r["server"]), str(r["owner"]), float(r["updated"])) for r in rows]

    async def delete_grants(self: _OnPool, server: str | None = None, owner: str | None = None) -> int:
        sql, params = _delete_grants_sql(server, owner, lambda n: f"${n}")
        status: str = await self._run(lambda p: p.execute(sql, *params))
        return int(status.split()[-1])

    @contextlib.asynccontextmanager
    async def exclusive(self: _OnPool, name: str) -> AsyncIterator[None]:
        """An in-process lock for `name` (a task waiting for it holds no connection), then a transaction-scoped
        advisory lock on the name's 64-bit hash, on one pooled connection, held for the block."""
        deadline = time.monotonic() + LOCK_WAIT_S
        async with _LOCAL.hold(self.name, name, deadline), self._advisory(name, deadline):
            yield

    @contextlib.asynccontextmanager
    async def _advisory(self: _OnPool, name: str, deadline: float) -> AsyncIterator[None]:
        pool = await self._get_pool()
        try:
            with anyio.fail_after(max(deadline - time.monotonic(), 0.0)):
                conn = await pool.acquire()
        except Exception as exc:
            raise StorageUnavailable(f"no connection for the lock {name}: {type(exc).__name__}") from None
        try:
            transaction = conn.transaction()
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0.0)):
                    await transaction.start()
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)
            except TimeoutError:
                raise StorageUnavailable(f"{name} is held by another process on this store for over "
                                         f"{LOCK_WAIT_S:g} s") from None
            except Exception as exc:
                raise StorageUnavailable(f"the lock {name} was not had: {type(exc).__name__}") from None
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    await transaction.rollback()  # ends the lock with the transaction
        finally:
            await pool.release(conn)
