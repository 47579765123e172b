"""Short-lived state in the store (logins waiting for their answer, paused scripts): taken once, whoever asks.

Two retries of one paused script at once, or two answers to one login, on one replica or two, must not both
continue it: `take_state` reads and forgets in one statement. Run on SQLite (two connections to one file, as
two processes would have) and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from mcp_gateway.codemode.journal import Journal, digest, load, save
from mcp_gateway.storage import SQLiteStorage, Storage
from tests.stores import open_store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _takes(stores: list[Storage], key: str, owner: str, tries: int) -> list[str | None]:
    found: list[str | None] = []

    async def take(store: Storage) -> None:
        found.append(await store.take_state(key, owner))

    async with anyio.create_task_group() as tg:
        for n in range(tries):
            tg.start_soon(take, stores[n % len(stores)])
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_state_is_taken_once(backend: str, tmp_path: Path) -> None:
    async with open_store(backend, tmp_path) as store:
        await store.put_state("k", "me", "body", time.time() + 60)
        assert await store.take_state("k", "someone else") is None  # another owner's: not found, not taken
        assert Counter(await _takes([store], "k", "me", 20)) == {"body": 1, None: 19}
        assert await store.get_state("k", "me") is None
        await store.put_state("old", "me", "body", time.time() - 1)
        assert await store.take_state("old", "me") is None  # expired


async def test_two_connections_to_one_sqlite_file_take_it_once(tmp_path: Path) -> None:
    one, two = SQLiteStorage(tmp_path / "gateway.db"), SQLiteStorage(tmp_path / "gateway.db")
    try:
        for n in range(5):
            await one.put_state(f"k{n}", "me", "body", time.time() + 60)
            assert Counter(await _takes([one, two], f"k{n}", "me", 10)) == {"body": 1, None: 9}
    finally:
        await one.close()
        await two.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_paused_script_continues_one_retry_of_many_at_once(backend: str, tmp_path: Path) -> None:
    async with open_store(backend, tmp_path) as store:
        state = await save(store, "key:ci", Journal(digest("x = 1"), calls={"k": {"result": 1}}))
        with pytest.raises(ValueError, match="not the one that paused"):  # a wrong retry does not spend it
            await load(store, "key:ci", state, "x = 2")
        outcomes: list[object] = []

        async def retry() -> None:
            try:
                outcomes.append(await load(store, "key:ci", state, "x = 1"))
            except ValueError as exc:
                outcomes.append(str(exc))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(retry)
        continued = [o for o in outcomes if isinstance(o, Journal)]
        assert len(continued) == 1 and continued[0].calls == {"k": {"result": 1}}
        others = [str(o) for o in outcomes if o not in continued]  # taken at once; told why a moment after
        assert all("an earlier retry continued it" in o or "expired" in o for o in others), others
