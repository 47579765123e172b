"""OAuth client registrations and grants in real stores, on both backends: upserts, a listing without
secrets, deletion by server, owner or all, another process reading what one wrote, and a store that is
down refusing with `StorageUnavailable`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from mcp_gateway.storage import PostgresStorage, SQLiteStorage, Storage, StorageUnavailable
from mcp_gateway.storage.oauth import GrantInfo
from tests.stores import BACKENDS, Cuttable, open_store, postgres_schema

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as s:
        yield s


def other(store: Storage) -> Storage:
    """Another connection to the same store (another process's, or another replica's)."""
    return PostgresStorage(store.url) if isinstance(store, PostgresStorage) else SQLiteStorage(store.path)  # type: ignore[attr-defined]


async def test_grants_are_upserted_and_read_back_as_written(store: Storage) -> None:
    assert await store.get_grant("github", "") is None
    before = time.time()
    await store.put_grant("github", "", b"\x00sealed-1\xff")
    await store.put_grant("github", "user:ann", b"ann-1")
    assert await store.get_grant("github", "") == b"\x00sealed-1\xff"
    [first] = [g for g in await store.list_grants() if g.owner == ""]
    await store.put_grant("github", "", b"sealed-2")
    assert await store.get_grant("github", "") == b"sealed-2"
    assert await store.get_grant("github", "user:ann") == b"ann-1"
    assert await store.get_grant("github", "user:bob") is None and await store.get_grant("jira", "") is None
    [again] = [g for g in await store.list_grants() if g.owner == ""]
    assert before <= first.updated <= again.updated <= time.time()


async def test_the_listing_names_grants_without_their_secrets(store: Storage) -> None:
    for server, owner in [("jira", "key:ci"), ("github", "user:bob"), ("github", ""), ("github", "user:ann")]:
        await store.put_grant(server, owner, f"SECRET-{server}-{owner}".encode())
    listed = await store.list_grants()
    assert [(g.server, g.owner) for g in listed] == [("github", ""), ("github", "user:ann"), ("github", "user:bob"),
                                                     ("jira", "key:ci")]
    assert all(isinstance(g, GrantInfo) and isinstance(g.updated, float) for g in listed)
    assert "SECRET" not in repr(listed)


async def test_grants_are_deleted_by_server_by_owner_by_both_or_all(store: Storage) -> None:
    async def fill() -> None:
        for server in ("github", "jira"):
            for owner in ("", "user:ann", "user:bob"):
                await store.put_grant(server, owner, b"x")

    async def left() -> set[tuple[str, str]]:
        return {(g.server, g.owner) for g in await store.list_grants()}

    await fill()
    assert await store.delete_grants("github", "user:ann") == 1
    assert await store.delete_grants("github", "user:ann") == 0
    assert await store.delete_grants(owner="user:bob") == 2
    assert await left() == {("github", ""), ("jira", ""), ("jira", "user:ann")}
    assert await store.delete_grants(server="jira") == 2
    assert await left() == {("github", "")}
    await fill()
    assert await store.delete_grants() == 6
    assert await store.list_grants() == [] and await store.delete_grants() == 0
    assert await store.delete_grants(server="nowhere") == 0


async def test_client_registrations_are_upserted_and_deleted(store: Storage) -> None:
    assert await store.get_oauth_client("github") is None
    await store.put_oauth_client("github", b"client-1")
    await store.put_oauth_client("github", b"client-2")
    await store.put_oauth_client("jira", b"\x00jira")
    assert await store.get_oauth_client("github") == b"client-2"
    assert await store.get_oauth_client("jira") == b"\x00jira"
    assert await store.delete_oauth_client("github")
    assert not await store.delete_oauth_client("github")
    assert await store.get_oauth_client("github") is None and await store.get_oauth_client("jira") == b"\x00jira"
    await store.put_grant("jira", "", b"g")
    assert await store.delete_oauth_client("jira") and await store.get_grant("jira", "") == b"g", "separate rows"


async def test_another_process_reads_what_one_wrote(store: Storage) -> None:
    second = other(store)
    try:
        await store.put_grant("github", "user:ann", b"from-one")
        await store.put_oauth_client("github", b"client")
        assert await second.get_grant("github", "user:ann") == b"from-one"
        assert await second.get_oauth_client("github") == b"client"
        await second.put_grant("github", "user:ann", b"refreshed-by-two")
        assert await store.get_grant("github", "user:ann") == b"refreshed-by-two"
        assert await second.delete_grants(owner="user:ann") == 1
        assert await store.get_grant("github", "user:ann") is None
    finally:
        await second.close()


async def test_an_unreadable_sqlite_store_raises_storage_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the state directory should be")
    store = SQLiteStorage(tmp_path / "file" / "gateway.db")
    await _every_method_refuses(store)
    await store.close()


async def test_a_postgres_store_that_goes_down_raises_storage_unavailable() -> None:
    proxy = Cuttable()
    async with postgres_schema() as url, anyio.create_task_group() as tg:
        await proxy.restore(tg)
        store = PostgresStorage(proxy.through(url), connect_timeout_s=1, query_timeout_s=2)
        try:
            await store.put_grant("github", "", b"sealed")
            assert await store.get_grant("github", "") == b"sealed"
            await proxy.cut()
            await _every_method_refuses(store)
        finally:
            await store.close()
            tg.cancel_scope.cancel()


async def _every_method_refuses(store: Storage) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_oauth_client("github"), lambda: store.put_oauth_client("github", b"c"),
        lambda: store.delete_oauth_client("github"), lambda: store.get_grant("github", ""),
        lambda: store.put_grant("github", "", b"g"), store.list_grants, store.delete_grants,
        lambda: store.delete_grants("github", "user:ann"),
    ]
    for call in calls:
        with pytest.raises(StorageUnavailable):
            await call()
