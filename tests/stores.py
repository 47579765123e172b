"""Real stores for tests: SQLite files in a temporary folder, and PostgreSQL schemas made per test.

PostgreSQL comes from `MCP_GATEWAY_TEST_POSTGRES` (default: the machine's server at
127.0.0.1:5432, database `test`, trust auth). Where none answers, its tests skip with a message
saying how to run them, except where `MCP_GATEWAY_REQUIRE_POSTGRES` is set (by .ci/run): there
they fail, so CI never skips them.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import asyncpg
import pytest

from benchmarks.common import postgres_schema as benchmark_schema
from mcp_gateway.storage import PostgresStorage, SQLiteStorage, Storage

POSTGRES_URL = os.environ.get("MCP_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]


async def require_postgres() -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except Exception as exc:
        message = (f"PostgreSQL at {POSTGRES_URL} does not answer ({type(exc).__name__}): start one, or set "
                   "MCP_GATEWAY_TEST_POSTGRES to a database these tests may create schemas in")
        if os.environ.get("MCP_GATEWAY_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    await conn.close()


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A URL whose connections use a new, empty schema (dropped afterwards)."""
    await require_postgres()
    async with benchmark_schema(POSTGRES_URL, prefix="t_") as url:
        yield url


@asynccontextmanager
async def open_store(backend: str, folder: Path) -> AsyncIterator[Storage]:
    """A fresh store of `backend` ("sqlite" or "postgres"), closed afterwards."""
    if backend == "sqlite":
        store: Storage = SQLiteStorage(folder / "gateway.db")
        try:
            yield store
        finally:
            await store.close()
        return
    async with postgres_schema() as url:
        store = PostgresStorage(url)
        try:
            yield store
        finally:
            await store.close()




class Cuttable:
    """A TCP forwarder on loopback in front of PostgreSQL that a test can cut and restore: while cut
    it refuses new connections and has reset the open ones (a network failure, or a server that went away).
    """

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self._scope: anyio.CancelScope | None = None

    def through(self, url: str) -> str:
        """`url` (of the server on `target_port`) through this forwarder."""
        return url.replace(f"127.0.0.1:{self.target_port}/", f"127.0.0.1:{self.port}/", 1)

    async def restore(self, tg: anyio.abc.TaskGroup) -> None:
        """Accept connections again (from the moment this returns)."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        scope = self._scope = anyio.CancelScope()

        async def serve() -> None:
            with scope:
                async with listener, anyio.create_task_group() as conns:
                    await listener.serve(self._forward, task_group=conns)

        tg.start_soon(serve)

    async def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        await anyio.sleep(0.1)

    async def _forward(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as server:

            async def pump(a: anyio.abc.SocketStream, b: anyio.abc.SocketStream) -> None:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    async for chunk in a:
                        await b.send(chunk)
                with contextlib.suppress(Exception):
                    await b.send_eof()

            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, client, server)
                tg.start_soon(pump, server, client)
