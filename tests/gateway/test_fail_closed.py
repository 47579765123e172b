"""Fail closed: no sequence of key operations, directory changes or store failures widens access."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_gateway import Gateway, list_tools, parse_config
from mcp_gateway.governance.keys import KeyRing
from mcp_gateway.storage import SQLiteStorage, StorageUnavailable
from tests.helpers import make_config, serve_gateway, stdio

Step = tuple[str, int]
STEPS = st.lists(st.tuples(st.sampled_from(["create", "revoke", "move_dir", "break_store", "heal_store"]),
                           st.integers(0, 2)), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_no_sequence_of_key_and_store_changes_reopens_the_gateway(
    steps: list[Step], tmp_path_factory: pytest.TempPathFactory
) -> None:
    anyio.run(_replay, steps, tmp_path_factory.mktemp("state"))


async def _replay(steps: list[Step], state: Path) -> None:
    config = parse_config({"groups": {"all": {"tools": ["*"]}}})
    storage = SQLiteStorage(state / "gateway.db")
    ring = KeyRing(config, storage)
    secrets: dict[int, str] = {}
    revoked: set[str] = set()
    ever_keyed = False
    for op, n in steps:
        if op == "create" and n not in secrets:
            try:
                secrets[n] = await ring.create(f"k{n}", None, ["all"])
                ever_keyed = True
            except StorageUnavailable:
                pass  # the store is broken: nothing was created
        elif op == "revoke" and n in secrets:
            try:
                if await storage.revoke_key(f"k{n}"):
                    revoked.add(secrets[n])
            except StorageUnavailable:
                pass
        elif op == "move_dir":  # the state directory is moved away: an empty one appears in its place
            await storage.close()
            if state.exists():
                shutil.move(state, state.with_name(state.name + f"-moved{len(os.listdir(state.parent))}"))
        elif op == "break_store":  # the database cannot be opened (a directory stands where the file was)
            await storage.close()
            _break(state)
        elif op == "heal_store":
            _heal(state)
        if ever_keyed:
            assert not await _open(ring), f"reopened after {steps}"
        assert await _refused(ring, "garbage-key-000000000000")
        for secret in revoked:
            assert await _refused(ring, secret)
    await storage.close()


async def _open(ring: KeyRing) -> bool:
    try:
        return await ring.refresh()
    except StorageUnavailable:
        assert not ring.is_open()
        return False


async def _refused(ring: KeyRing, secret: str) -> bool:
    try:
        return await ring.authenticate(secret) is None
    except StorageUnavailable:
        return True


def _break(state: Path) -> None:
    db = state / "gateway.db"
    if db.is_file():
        for suffix in ("", "-wal", "-shm"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.mkdir(parents=True, exist_ok=True)


def _heal(state: Path) -> None:
    db = state / "gateway.db"
    if db.is_dir():
        db.rmdir()


@pytest.mark.anyio
async def test_an_unreadable_store_lets_nobody_in(tmp_path: Path) -> None:
    _break(tmp_path)
    ring = KeyRing(parse_config({}), SQLiteStorage(tmp_path / "gateway.db"))
    assert not await _open(ring)
    assert await _refused(ring, "anything-at-all-0000")


@pytest.mark.anyio
async def test_revoking_the_last_key_of_a_running_gateway_does_not_open_it() -> None:
    gw = Gateway(make_config({"math": stdio("math_server")}, groups={"all": {"tools": ["*"]}}))
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with serve_gateway(gw) as url, httpx.AsyncClient() as http:
        accept = {"Accept": "application/json, text/event-stream"}
        assert (await http.post(url, json=ping, headers=accept)).status_code != 401
        secret = await gw.keys.create("only", None, ["all"])
        assert await gw.storage.revoke_key("only")
        for headers in ({}, {"Authorization": f"Bearer {secret}"}, {"Authorization": "Bearer garbage-0000000000"}):
            answer = await http.post(url, json=ping, headers=headers)
            assert answer.status_code == 401, headers


def test_state_dir_is_beside_the_config_file_wherever_the_command_runs(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    config = project / "gateway.toml"
    config.write_text('[groups.all]\ntools = ["*"]\n', encoding="utf-8")

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mcp_gateway.cli", *args, "--config", str(config)],
                              cwd=cwd, capture_output=True, text=True, timeout=60, check=False)

    assert cli("keys", "create", "ann", "--groups", "all", cwd=project).returncode == 0
    listed = cli("keys", "list", cwd=elsewhere)
    assert "ann" in listed.stdout, listed.stderr
    assert not (elsewhere / ".mcp-gateway").exists()
    assert (project / ".mcp-gateway" / "gateway.db").exists()


@pytest.mark.anyio
async def test_no_keys_lets_http_callers_in_only_where_the_config_says_anonymous() -> None:
    """Behind a reverse proxy every request comes from loopback: "no keys" alone must not mean "everyone"."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    closed = Gateway(make_config({"math": stdio("math_server")}, gateway={"anonymous": False}))
    async with serve_gateway(closed) as url, httpx.AsyncClient() as http:
        refused = await http.post(url, json=ping, headers=accept)
    assert refused.status_code == 401
    assert "no API keys yet" in refused.json()["error"]["message"]
    assert "anonymous = true" in refused.json()["error"]["message"]
    async with closed:  # in-process (the embedding API, stdio): the host's own code, no network caller
        listed = [t.name for t in list_tools(closed)]
    assert "executeToolCode" in listed
    opened = Gateway(make_config({"math": stdio("math_server")}, gateway={"anonymous": True}))
    async with serve_gateway(opened) as url, httpx.AsyncClient() as http:
        assert (await http.post(url, json=ping, headers=accept)).status_code != 401
