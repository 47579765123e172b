"""Real stores for tests: SQLite files in a temporary folder, and PostgreSQL schemas made per test.

PostgreSQL comes from `MCP_GATEWAY_TEST_POSTGRES` (default: the machine's server at
127.0.0.1:5432, database `test`, trust auth). Where none answers, its tests skip with a message
saying how to run them, except where `MCP_GATEWAY_REQUIRE_POSTGRES` is set (by .ci/run): there
they fail, so CI never skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

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
    schema = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES_URL}?search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


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


def storage_url(backend: str, folder: Path) -> str:
    """A `[storage] url` for a config (PostgreSQL: use inside `postgres_schema`)."""
    return f"sqlite:///{folder / 'gateway.db'}"
