"""Versioned schema migrations: a fresh store gets every one once, a round-one SQLite file is brought
up to date in place, a store newer than the code is refused, and `mcp-gateway migrate` says what it did."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_gateway.storage import SQLiteStorage, StorageUnavailable
from mcp_gateway.storage.migrations import migrations
from tests.stores import BACKENDS, open_store, postgres_schema

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_fresh_store_gets_every_migration_once(backend: str, tmp_path: Path) -> None:
    async with open_store(backend, tmp_path) as store:
        names = [m.label for m in migrations(backend)]
        assert await store.migrate() == names
        assert await store.migrate() == []
        assert not await store.has_keys()


async def test_a_round_one_sqlite_file_is_migrated_in_place_keeping_its_rows(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.executescript(migrations("sqlite")[0].sql)  # the tables as round one made them, no version table
    db.execute("ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")
    db.execute("INSERT INTO keys VALUES ('ann', 'sha256:00', NULL, '[]', 1.0, NULL, 1)")
    db.commit()
    db.close()
    store = SQLiteStorage(tmp_path / "gateway.db")
    try:
        assert await store.migrate() == [m.label for m in migrations("sqlite")[2:]]
        [ann] = await store.list_keys()
        assert ann.name == "ann" and ann.admin
    finally:
        await store.close()


async def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "gateway.db")
    await store.migrate()
    await store.close()
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)")
    db.commit()
    db.close()
    with pytest.raises(StorageUnavailable, match="newer than this gateway knows"):
        await SQLiteStorage(tmp_path / "gateway.db").has_keys()


async def test_the_migrate_command(tmp_path: Path) -> None:
    async with postgres_schema() as url:
        config = tmp_path / "gateway.toml"
        config.write_text(f'[storage]\nurl = "{url}"\n')

        def migrate() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "mcp_gateway.cli", "migrate", "--config", str(config)],
                                  capture_output=True, text=True, timeout=60, check=False)

        first, second = migrate(), migrate()
    assert first.returncode == 0 and "applied 0001_initial, 0002_sessions, 0003_state" in first.stdout
    assert second.returncode == 0 and second.stdout.strip().endswith("schema up to date")
    config.write_text('[storage]\nurl = "postgresql://postgres:secret-pw@127.0.0.1:1/test"\n')
    down = subprocess.run([sys.executable, "-m", "mcp_gateway.cli", "migrate", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 2 and "the store is unavailable" in down.stderr and "cannot connect" in down.stderr
    assert "secret-pw" not in down.stderr and "postgres:***@" in down.stderr
