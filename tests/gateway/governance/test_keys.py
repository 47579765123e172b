"""API keys: hashing, keys from the config, and keys created in real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gateway import GatewayConfig, parse_config
from mcp_gateway.governance.identity import Identity
from mcp_gateway.governance.keys import RECHECK_S, KeyRing, hash_key, matches
from mcp_gateway.storage import PostgresStorage, SQLiteStorage, Storage, StorageUnavailable
from tests.stores import BACKENDS, open_store

CLEAR_SECRET = "clear-secret-0123456789"
HASHED_SECRET = "hashed-secret-0123456789"
pytestmark = pytest.mark.anyio
GROUPS = {
    "read": {"tools": ["github.get_*"]},
    "write": {"tools": ["github.create_*"]},
    "data": {"tools": ["db.*"]},
}


def config(**sections: Any) -> GatewayConfig:
    return parse_config({"groups": GROUPS, "teams": {"platform": {"groups": ["read", "write"]}}, **sections})


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as store:
        yield store


def test_hash_key_is_sha256_hex_with_its_prefix() -> None:
    assert hash_key("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_key("mgw_x") == "sha256:" + hashlib.sha256(b"mgw_x").hexdigest()
    assert hash_key("a") != hash_key("b")


def test_matches_compares_whole_hashes() -> None:
    assert matches(hash_key("abc"), hash_key("abc"))
    assert not matches(hash_key("abc"), hash_key("abd"))
    assert not matches(hash_key("abc"), hash_key("abc")[:-1])


async def test_config_keys_in_clear_and_as_hash(storage: Storage) -> None:
    ring = KeyRing(config(keys={
        "ci": {"key": CLEAR_SECRET, "team": "platform", "remove_groups": ["write"], "deny": ["github.get_secret"]},
        "bob": {"hash": hash_key(HASHED_SECRET), "groups": ["data"]},
    }), storage)
    ci = await ring.authenticate(CLEAR_SECRET)
    bob = await ring.authenticate(HASHED_SECRET)
    assert ci == Identity("ci", "platform", ("github.get_*",), ("github.get_secret",))
    assert bob == Identity("bob", None, ("db.*",))
    assert await ring.authenticate("wrong-secret-0123456789") is None
    assert await ring.authenticate(hash_key(HASHED_SECRET)) is None  # the hash itself is not a key
    assert await ring.authenticate("") is None
    assert not ring.is_open()


async def test_is_open_only_while_no_key_ever_existed(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    assert not ring.is_open()  # not before the store has said so
    assert await ring.refresh()
    assert await ring.refresh()  # asking does not close it
    await ring.create("alice", None, ["data"])
    assert not await ring.refresh()
    assert await storage.revoke_key("alice")
    assert not await ring.refresh()  # a revoked key still counts: fails closed
    assert not await KeyRing(config(), storage).refresh()  # for a new key ring on the same store too


async def test_config_keys_close_it_without_storage(storage: Storage) -> None:
    assert not await KeyRing(config(keys={"ci": {"key": CLEAR_SECRET}}), storage).refresh()
    assert await storage.list_keys() == []


async def test_once_closed_it_stays_closed_whatever_happens_to_the_store(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "gateway.db")
    try:
        ring = KeyRing(config(), store)
        await ring.create("alice", None, ["read"])
        assert not await ring.refresh()
        await store.close()
        for db in tmp_path.glob("gateway.db*"):
            db.unlink()
        assert not await store.has_keys()  # the store was emptied behind its back
        assert not await ring.refresh()
        assert await KeyRing(config(), store).refresh()  # a fresh key ring sees an empty store
    finally:
        await store.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_stored_key_seen_by_authenticate_closes_a_key_ring_that_was_open(backend: str, tmp_path: Path) -> None:
    async with open_store(backend, tmp_path) as first:
        second = _second(first)
        try:
            ring = KeyRing(config(), first)
            assert await ring.refresh()
            secret = await KeyRing(config(), second).create("alice", None, ["read"])
            assert await ring.authenticate(secret) is not None
            assert not ring.is_open()
        finally:
            await second.close()


def _second(store: Storage) -> Storage:
    """Another connection to the same store (another process's, or another replica's)."""
    return PostgresStorage(store.url) if isinstance(store, PostgresStorage) else SQLiteStorage(store.path)  # type: ignore[attr-defined]


@pytest.mark.parametrize("broken", [
    pytest.param(lambda tmp: SQLiteStorage(tmp / "file" / "gateway.db"), id="sqlite"),
    pytest.param(lambda tmp: PostgresStorage("postgresql://postgres@127.0.0.1:1/test", connect_timeout_s=1),
                 id="postgres-down"),
])
async def test_an_unreadable_store_opens_nothing_and_lets_no_one_in(broken: Any, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the state directory should be")
    store: Storage = broken(tmp_path)
    with pytest.raises(StorageUnavailable):
        await store.has_keys()
    ring = KeyRing(config(), store)
    with pytest.raises(StorageUnavailable):
        await ring.refresh()
    assert not ring.is_open()
    with pytest.raises(StorageUnavailable):
        await ring.authenticate("any-secret-0123456789")
    # config keys do not need the store
    ring = KeyRing(config(keys={"ci": {"key": CLEAR_SECRET}}), store)
    assert await ring.authenticate(CLEAR_SECRET) == Identity("ci", None, ())
    await store.close()


async def test_a_created_key_authenticates_with_its_team_and_groups(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    secret = await ring.create("alice", "platform", ["data"])
    assert secret.startswith("mgw_") and len(secret) > 40
    assert await ring.authenticate(secret) == Identity(
        "alice", "platform", ("github.get_*", "github.create_*", "db.*")
    )
    # only the hash is stored
    [stored] = await storage.list_keys()
    assert stored.name == "alice" and stored.hash == hash_key(secret) and stored.groups == ("data",)
    assert secret not in repr(stored)


async def test_stored_keys_are_seen_by_another_key_ring_on_the_same_store(storage: Storage) -> None:
    second = _second(storage)
    try:
        secret = await KeyRing(config(), storage).create("alice", None, ["read"])
        ring = KeyRing(config(), second)
        assert await ring.authenticate(secret) == Identity("alice", None, ("github.get_*",))
        assert await storage.revoke_key("alice")
        assert await ring.authenticate(secret) is None  # a revocation through one is seen through the other
    finally:
        await second.close()


async def test_each_created_key_is_distinct(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    a, b = await ring.create("a", None, ["read"]), await ring.create("b", None, ["data"])
    assert a != b
    assert (await ring.authenticate(a)).name == "a"  # type: ignore[union-attr]
    assert (await ring.authenticate(b)).name == "b"  # type: ignore[union-attr]


async def test_a_revoked_key_is_refused_at_once(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    secret = await ring.create("alice", None, ["read"])
    keep = await ring.create("bob", None, ["read"])
    assert await storage.revoke_key("alice")
    assert await ring.authenticate(secret) is None
    assert await ring.authenticate(keep) is not None
    assert not await storage.revoke_key("alice")  # already revoked


async def test_create_refuses_a_name_already_used(storage: Storage) -> None:
    ring = KeyRing(config(keys={"ci": {"key": CLEAR_SECRET}}), storage)
    with pytest.raises(ValueError, match="a key named 'ci' already exists"):
        await ring.create("ci", None, [])
    await ring.create("alice", None, [])
    with pytest.raises(ValueError, match="a key named 'alice' already exists"):
        await ring.create("alice", None, [])
    await storage.revoke_key("alice")
    with pytest.raises(ValueError, match="already exists"):  # a revoked key's name stays taken
        await ring.create("alice", None, [])
    assert [k.name for k in await storage.list_keys()] == ["alice"]


async def test_create_refuses_an_unknown_team(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    with pytest.raises(ValueError, match=r"unknown team 'data'; teams in the config: platform$"):
        await ring.create("alice", "data", [])
    with pytest.raises(ValueError, match="teams in the config: none"):
        await KeyRing(parse_config({}), storage).create("alice", "platform", [])
    assert await storage.list_keys() == []


async def test_create_refuses_unknown_groups(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    with pytest.raises(ValueError, match=r"unknown groups nope, gone; groups in the config: read, write, data$"):
        await ring.create("alice", None, ["read", "nope", "gone"])
    assert await storage.list_keys() == []
    assert await ring.refresh()


async def test_a_revocation_reaches_a_caller_already_in_within_recheck_s(storage: Storage) -> None:
    ring = KeyRing(config(), storage)
    who = await ring.authenticate(await ring.create("alice", None, ["read"]))
    assert who is not None
    assert await storage.revoke_key("alice")
    assert await ring.still_valid(who), "confirmed by the store a moment ago: not asked again"
    await anyio.sleep(RECHECK_S + 0.05)
    assert not await ring.still_valid(who)
