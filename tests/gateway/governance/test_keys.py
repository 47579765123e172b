"""API keys: hashing, keys from the config, and keys created in real SQLite storage."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway import GatewayConfig, parse_config
from mcp_gateway.governance.identity import Identity
from mcp_gateway.governance.keys import KeyRing, hash_key, matches
from mcp_gateway.storage import SQLiteStorage, open_storage

CLEAR_SECRET = "clear-secret-0123456789"
HASHED_SECRET = "hashed-secret-0123456789"
GROUPS = {
    "read": {"tools": ["github.get_*"]},
    "write": {"tools": ["github.create_*"]},
    "data": {"tools": ["db.*"]},
}


def config(**sections: Any) -> GatewayConfig:
    return parse_config({"groups": GROUPS, "teams": {"platform": {"groups": ["read", "write"]}}, **sections})


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    store = open_storage(tmp_path)
    yield store
    store.close()


def test_hash_key_is_sha256_hex_with_its_prefix() -> None:
    assert hash_key("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_key("mgw_x") == "sha256:" + hashlib.sha256(b"mgw_x").hexdigest()
    assert hash_key("a") != hash_key("b")


def test_matches_compares_whole_hashes() -> None:
    assert matches(hash_key("abc"), hash_key("abc"))
    assert not matches(hash_key("abc"), hash_key("abd"))
    assert not matches(hash_key("abc"), hash_key("abc")[:-1])


def test_config_keys_in_clear_and_as_hash(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(keys={
        "ci": {"key": CLEAR_SECRET, "team": "platform", "remove_groups": ["write"], "deny": ["github.get_secret"]},
        "bob": {"hash": hash_key(HASHED_SECRET), "groups": ["data"]},
    }), storage)
    ci = ring.authenticate(CLEAR_SECRET)
    bob = ring.authenticate(HASHED_SECRET)
    assert ci == Identity("ci", "platform", ("github.get_*",), ("github.get_secret",))
    assert bob == Identity("bob", None, ("db.*",))
    assert ring.authenticate("wrong-secret-0123456789") is None
    assert ring.authenticate(hash_key(HASHED_SECRET)) is None  # the hash itself is not a key
    assert ring.authenticate("") is None
    assert not ring.is_open()


def test_is_open_only_while_no_key_ever_existed(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(), storage)
    assert ring.is_open()
    assert ring.is_open()  # asking does not close it
    ring.create("alice", None, ["data"])
    assert not ring.is_open()
    assert storage.revoke_key("alice")
    assert not ring.is_open()  # a revoked key still counts: fails closed
    assert not KeyRing(config(), storage).is_open()  # for a new key ring on the same store too


def test_config_keys_close_it_without_storage(storage: SQLiteStorage) -> None:
    assert not KeyRing(config(keys={"ci": {"key": CLEAR_SECRET}}), storage).is_open()
    assert storage.list_keys() == []


def test_once_closed_it_stays_closed_whatever_happens_to_the_store(tmp_path: Path) -> None:
    store = open_storage(tmp_path)
    try:
        ring = KeyRing(config(), store)
        ring.create("alice", None, ["read"])
        assert not ring.is_open()
        store.close()
        for db in tmp_path.glob("gateway.db*"):
            db.unlink()
        assert not store.has_keys()  # the store was emptied behind its back
        assert not ring.is_open()
        assert KeyRing(config(), store).is_open()  # a fresh key ring sees an empty store
    finally:
        store.close()


def test_a_stored_key_seen_by_authenticate_closes_a_key_ring_that_was_open(tmp_path: Path) -> None:
    first, second = open_storage(tmp_path), open_storage(tmp_path)
    try:
        ring = KeyRing(config(), first)
        assert ring.is_open()
        secret = KeyRing(config(), second).create("alice", None, ["read"])
        assert ring.authenticate(secret) is not None
        assert not ring.is_open()
    finally:
        first.close()
        second.close()


def test_an_unreadable_store_opens_nothing_and_lets_no_one_in(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    broken = open_storage(tmp_path / "state")
    with pytest.raises(OSError):
        broken.has_keys()
    ring = KeyRing(config(), broken)
    assert not ring.is_open()
    assert ring.authenticate("any-secret-0123456789") is None
    # config keys do not need the store
    ring = KeyRing(config(keys={"ci": {"key": CLEAR_SECRET}}), broken)
    assert ring.authenticate(CLEAR_SECRET) == Identity("ci", None, ())


def test_a_created_key_authenticates_with_its_team_and_groups(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(), storage)
    secret = ring.create("alice", "platform", ["data"])
    assert secret.startswith("mgw_") and len(secret) > 40
    assert ring.authenticate(secret) == Identity(
        "alice", "platform", ("github.get_*", "github.create_*", "db.*")
    )
    # only the hash is stored
    [stored] = storage.list_keys()
    assert stored.name == "alice" and stored.hash == hash_key(secret) and stored.groups == ("data",)
    assert secret not in repr(stored)


def test_stored_keys_are_seen_by_another_key_ring_on_the_same_file(tmp_path: Path) -> None:
    first, second = open_storage(tmp_path), open_storage(tmp_path)
    try:
        secret = KeyRing(config(), first).create("alice", None, ["read"])
        ring = KeyRing(config(), second)
        assert ring.authenticate(secret) == Identity("alice", None, ("github.get_*",))
    finally:
        first.close()
        second.close()


def test_each_created_key_is_distinct(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(), storage)
    a, b = ring.create("a", None, ["read"]), ring.create("b", None, ["data"])
    assert a != b
    assert ring.authenticate(a).name == "a"  # type: ignore[union-attr]
    assert ring.authenticate(b).name == "b"  # type: ignore[union-attr]


def test_a_revoked_key_is_refused_at_once(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(), storage)
    secret = ring.create("alice", None, ["read"])
    keep = ring.create("bob", None, ["read"])
    assert storage.revoke_key("alice")
    assert ring.authenticate(secret) is None
    assert ring.authenticate(keep) is not None
    assert not storage.revoke_key("alice")  # already revoked


def test_create_refuses_a_name_already_used(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(keys={"ci": {"key": CLEAR_SECRET}}), storage)
    with pytest.raises(ValueError, match="a key named 'ci' already exists"):
        ring.create("ci", None, [])
    ring.create("alice", None, [])
    with pytest.raises(ValueError, match="a key named 'alice' already exists"):
        ring.create("alice", None, [])
    storage.revoke_key("alice")
    with pytest.raises(ValueError, match="already exists"):  # a revoked key's name stays taken
        ring.create("alice", None, [])
    assert [k.name for k in storage.list_keys()] == ["alice"]


def test_create_refuses_an_unknown_team(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(), storage)
    with pytest.raises(ValueError, match=r"unknown team 'data'; teams in the config: platform$"):
        ring.create("alice", "data", [])
    with pytest.raises(ValueError, match="teams in the config: none"):
        KeyRing(parse_config({}), storage).create("alice", "platform", [])
    assert storage.list_keys() == []


def test_create_refuses_unknown_groups(storage: SQLiteStorage) -> None:
    ring = KeyRing(config(), storage)
    with pytest.raises(ValueError, match=r"unknown groups nope, gone; groups in the config: read, write, data$"):
        ring.create("alice", None, ["read", "nope", "gone"])
    assert storage.list_keys() == []
    assert ring.is_open()
