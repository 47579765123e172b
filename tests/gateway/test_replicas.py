"""Three gateway processes on one PostgreSQL behind HAProxy (round robin, no stickiness).

Clients of the 2026-07-28 protocol carry no session, so each request may land on any replica:
the tests show that they do, that keys and limits hold across replicas, that `kill -9` of a
replica under load loses no audit row of an answered call while the clients carry on, and that
a PostgreSQL restart mid-traffic gives clear errors and service resumes by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest

from benchmarks.cluster import HAPROXY, Cluster, cluster
from benchmarks.common import toml_table
from mcp_gateway.storage import PostgresStorage
from tests.helpers import FIXTURES, eventually, key_client, text_of
from tests.stores import postgres_schema

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def _require_haproxy() -> None:
    if shutil.which("haproxy") or Path(HAPROXY).exists():
        return
    message = "HAProxy is not installed (Debian: apt-get install haproxy); .ci/run installs it"
    if os.environ.get("MCP_GATEWAY_REQUIRE_HAPROXY"):
        pytest.fail(message)
    pytest.skip(message)


def config_text(url: str, tmp: Path) -> str:
    math = {"command": sys.executable, "args": [str(FIXTURES / "math_server.py")], "mode": "direct"}
    text = {"command": sys.executable, "args": [str(FIXTURES / "text_server.py")]}
    return (toml_table("gateway", {"state_dir": str(tmp / "state")})
            + toml_table("storage", {"url": url, "connect_timeout_s": 2})
            + toml_table("servers.math", math) + toml_table("servers.text", text)
            + toml_table("groups.all", {"tools": ["*"]})
            + toml_table("teams.t", {"groups": ["all"], "calls_per_minute": 30})
            + toml_table('tools."math.stats"', {"approval": "always"}))


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_gateway.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Path, str]]:
    """Three replicas behind HAProxy, a config file for the CLI, and a key of team t made with it
    (and `bob`'s, of no team, so without a rate limit: `bob` in tmp_path)."""
    _require_haproxy()
    async with postgres_schema() as url:
        text = config_text(url, tmp_path)
        config = tmp_path / "cli.toml"
        config.write_text(text)
        made = cli(config, "keys", "create", "ann", "--team", "t")
        assert made.returncode == 0, made.stderr
        (tmp_path / "bob").write_text(cli(config, "keys", "create", "bob", "--groups", "all").stdout.strip())
        async with cluster(text, 3) as group:
            yield group, config, made.stdout.strip()


async def rows_of(url: str, key: str) -> list[tuple[str | None, str, str]]:
    store = PostgresStorage(url)
    try:
        return [(r.replica, r.tool, r.outcome) for r in await store.query_audit(key=key, limit=10000)]
    finally:
        await store.close()


async def test_consecutive_requests_land_on_different_replicas_and_share_limits_and_keys(
    three: tuple[Cluster, Path, str],
) -> None:
    group, config, secret = three
    async with key_client(group.url, secret) as client:
        assert "math_add" in [t.name for t in (await client.list_tools()).tools]
        results = [await client.call_tool("math_add", {"a": i, "b": 1}) for i in range(27)]
        script = await client.call_tool("executeToolCode", {"code": 'result = text.count(text="a b c")["words"]'})
        assert [r.structured_content for r in results] == [{"result": i + 1} for i in range(27)]
        assert "result = 3" in text_of(script)
        over = [await client.call_tool("math_add", {"a": 0, "b": 0}) for _ in range(3)]
    # 27 direct calls and one made by the script: 28 of the team's 30 a minute, on whichever replica
    assert [r.is_error for r in over] == [False, False, True]
    assert "team t allows 30 calls per minute" in text_of(over[2])
    url = config.read_text().split('url = "')[1].split('"')[0]
    rows = await rows_of(url, "ann")
    assert {replica for replica, tool, _ in rows if tool == "add"} == {"r1", "r2", "r3"}
    logs = cli(config, "logs", "--key", "ann", "--tool", "add", "--limit", "1000")
    assert logs.returncode == 0 and logs.stdout.splitlines()[0].split()[-1] == "replica"
    assert {line.split()[-1] for line in logs.stdout.splitlines()[2:]} == {"r1", "r2", "r3"}
    revoked = cli(config, "keys", "revoke", "ann")
    assert revoked.returncode == 0, revoked.stderr
    async with httpx.AsyncClient() as http:
        for _ in range(6):  # two rounds of the three replicas, at once
            answer = await http.post(group.url, json=PING, headers={**ACCEPT, "Authorization": f"Bearer {secret}"})
            assert answer.status_code == 401


async def test_a_2025_11_25_session_continues_on_whichever_replica_a_request_lands(
    three: tuple[Cluster, Path, str],
) -> None:
    group, config, _ = three
    secret = (config.parent / "bob").read_text()
    async with key_client(group.url, secret, mode="legacy") as client:  # one Mcp-Session-Id, no stickiness
        names = [t.name for t in (await client.list_tools()).tools]
        results = [await client.call_tool("math_add", {"a": i, "b": 1}) for i in range(6)]
        script = await client.call_tool("executeToolCode", {"code": 'result = text.count(text="a b")["words"]'})
    assert "math_add" in names and "executeToolCode" in names
    assert [r.structured_content for r in results] == [{"result": i + 1} for i in range(6)]
    assert "result = 2" in text_of(script)
    url = config.read_text().split('url = "')[1].split('"')[0]
    assert len({replica for replica, tool, _ in await rows_of(url, "bob") if tool == "add"}) == 3


async def test_an_approval_asked_on_one_replica_is_answered_through_another(three: tuple[Cluster, Path, str]) -> None:
    group, config, _ = three
    secret = (config.parent / "bob").read_text()
    asked: list[str] = []

    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={})

    async with key_client(group.url, secret, mode="legacy", elicitation_callback=on_elicit) as client:
        with anyio.fail_after(60):
            results = [await client.call_tool("math_stats", {"values": [1, i, 3]}) for i in range(4)]
    assert len(asked) == 4
    assert [r.structured_content["max"] for r in results] == [3, 3, 3, 3]  # type: ignore[index]


async def test_kill_9_of_a_replica_under_load_loses_no_answered_call_and_clients_carry_on(
    three: tuple[Cluster, Path, str],
) -> None:
    group, config, _ = three
    secret = (config.parent / "bob").read_text()
    answered: list[int] = []
    failed: list[str] = []
    after_kill: list[bool] = []
    killed = anyio.Event()

    async def client_loop(n: int) -> None:
        i = 0
        while i < 40:  # a client that loses its connection opens another, as an agent's client would
            try:
                async with key_client(group.url, secret) as client:
                    while i < 40:
                        i += 1
                        out = await client.call_tool("math_echo", {"text": f"{n}-{i}"})
                        if not out.is_error:
                            answered.append(1)
                            if killed.is_set():
                                after_kill.append(True)
                        await anyio.sleep(0.02)
            except Exception as exc:  # a call in flight on the killed replica
                failed.append(type(exc).__name__)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(client_loop, n)
        await eventually(lambda: len(answered) >= 15, 30)
        group.replicas[1].kill(signal.SIGKILL)
        killed.set()
    url = config.read_text().split('url = "')[1].split('"')[0]
    ok_rows = [r for r in await rows_of(url, "bob") if r[1] == "echo" and r[2] == "ok"]
    assert len(ok_rows) >= len(answered), "every answered call has its row"
    assert {r[0] for r in ok_rows} == {"r1", "r2", "r3"}
    assert len(after_kill) >= 60, f"the clients carried on ({len(after_kill)} calls after the kill, {failed})"
    assert len(answered) + len(failed) <= 120 and len(failed) <= 10


async def test_a_replica_stopped_with_sigterm_finishes_its_call_and_clients_carry_on(
    three: tuple[Cluster, Path, str],
) -> None:
    group, config, _ = three
    secret = (config.parent / "bob").read_text()
    url = config.read_text().split('url = "')[1].split('"')[0]
    outcome: list[str] = []

    async def slow_call() -> None:
        async with key_client(group.url, secret) as client:
            outcome.append(text_of(await client.call_tool("math_slow", {"seconds": 3})))

    async def started_on() -> str | None:
        return next((replica for replica, tool, state in await rows_of(url, "bob")
                     if tool == "slow" and state == "started"), None)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_call)
        await eventually(started_on, 15)
        name = await started_on()
        stopping = next(r for r in group.replicas if r.name == name)
        assert stopping.proc is not None
        stopping.proc.send_signal(signal.SIGTERM)  # a rolling restart takes it out
    assert outcome == ["slept 3.0"], outcome
    assert [r for r in await rows_of(url, "bob") if r[1] == "slow"] == [(stopping.name, "slow", "ok")]
    async with key_client(group.url, secret) as client:  # the others serve everything meanwhile
        answers = [await client.call_tool("math_add", {"a": i, "b": 1}) for i in range(6)]
    assert all(not a.is_error for a in answers)
    assert stopping.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once done


async def test_a_postgresql_restart_mid_traffic_gives_clear_errors_and_service_resumes(
    three: tuple[Cluster, Path, str],
) -> None:
    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL needs pg_ctlcluster as root (the project's machines have both)")
    group, _, secret = three
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    errors: list[str] = []
    async with key_client(group.url, secret) as client:
        assert not (await client.call_tool("math_add", {"a": 1, "b": 1})).is_error
        restart = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert restart.returncode == 0, restart.stderr

    async def works() -> bool:
        try:
            async with key_client(group.url, secret) as again:
                out = await again.call_tool("math_add", {"a": 2, "b": 2})
        except Exception as exc:
            errors.append(str(exc))
            return False
        if out.is_error:
            errors.append(text_of(out))
        return not out.is_error

    await eventually(works, 30, every_s=0.5)
    for replica in group.replicas:
        assert replica.proc is not None and replica.proc.poll() is None, "no replica crashed"
    unclear = [e for e in errors if "unavailable" not in e and "503" not in e and "Service Unavailable" not in e]
    assert not unclear, unclear
