"""The gateway's outbound OAuth requests, against a hostile authorization server (`tests/fixtures/hostile_as.py`, a
real HTTP server on loopback): huge answers are cut as they are read (little memory, a clear error), a dripping
server is cut at the deadline, one login's refresh never holds up another's (a lock per name, also across
processes), tokens over 16 KiB are never stored, stored grants are opened once (and a huge one never), and
sign-in's introspection is bounded: a refused token is asked about once, concurrent requests with one token share
an introspection, at most 8 are in flight (the rest fail closed with 503), and the metadata is fetched once.
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.shared.auth import OAuthToken

from mcp_gateway import Gateway
from mcp_gateway.oauth.errors import LoginError, LoginRequired, TokenRequestError
from mcp_gateway.oauth.grants import SHARED, Grants, Registration, open_grants
from mcp_gateway.oauth.login import register
from mcp_gateway.storage import PostgresStorage, SQLiteStorage, StorageUnavailable
from mcp_gateway.storage import oauth as stored_oauth
from tests.fixtures.hostile_as import HostileAS
from tests.helpers import free_port, http_fixture, key_client, make_config, serve_gateway, wait_for_port
from tests.stores import BACKENDS, open_store

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
CALLBACK = "http://127.0.0.1:9/oauth/callback"
REFRESH = {"grant_type": "refresh_token", "refresh_token": "rt"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def hostile() -> AsyncIterator[HostileAS]:
    async with http_fixture("hostile_as") as url:
        yield HostileAS(url.removesuffix("/mcp"))


@contextlib.asynccontextmanager
async def grants_at(server: HostileAS, tmp_path: Path, *names: str,
                    registered: bool = True) -> AsyncIterator[tuple[Grants, dict[str, Registration]]]:
    """The gateway's grants for upstreams `names` (at `<AS>/<name>/mcp`, whose authorization server is `server`),
    each registered there by discovery and dynamic registration unless `registered` is false."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    config = make_config({n: {"url": f"{server.url}/{n}/mcp", "oauth": {}} for n in names},
                         gateway={"state_dir": str(state)})
    storage = SQLiteStorage(state / "gateway.db")
    grants = open_grants(config, storage, {})
    assert grants is not None
    try:
        registrations = {}
        for name in names if registered else ():
            registrations[name] = await register(grants.http, name, config.servers[name], CALLBACK)
            await grants.save_registration(name, registrations[name])
        yield grants, registrations
    finally:
        await grants.http.aclose()
        await storage.close()


@contextlib.contextmanager
def traced() -> Iterator[Callable[[], float]]:
    """The peak of Python's allocations (MiB) within the block, read by the function it yields."""
    tracemalloc.start()
    peak = [0.0]
    try:
        yield lambda: peak[0]
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.stop()


# -- answers too large or too slow ---------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["huge", "huge_error", "gzip_bomb"])
async def test_a_huge_token_answer_is_cut_as_it_is_read(hostile: HostileAS, tmp_path: Path, answer: str) -> None:
    """64 MiB answers (a token, an error, a token compressed to 64 KiB): refused once 64 KiB are read (or
    decompressed), with a short, clear error."""
    async with grants_at(hostile, tmp_path, "tick") as (grants, registrations):
        await hostile.mode(token=answer, huge_mb=64)
        with traced() as peak, pytest.raises(TokenRequestError) as refused:
            await grants.token_request(registrations["tick"], REFRESH)
    said = str(refused.value)
    assert f"the answer of {hostile.url} is over 64 KiB" in said and len(said) < 300, said[:300]
    assert not refused.value.refused  # the login is kept: the server may answer sanely next time
    assert peak() < 4, f"{peak():.1f} MiB"


async def test_a_huge_metadata_document_is_refused_at_discovery(hostile: HostileAS, tmp_path: Path) -> None:
    await hostile.mode(meta="huge")
    async with grants_at(hostile, tmp_path, "tick", registered=False) as (grants, _):
        config = make_config({"tick": {"url": f"{hostile.url}/tick/mcp", "oauth": {}}})
        with traced() as peak, pytest.raises(LoginError, match="is over 256 KiB"):
            await register(grants.http, "tick", config.servers["tick"], CALLBACK)
    assert peak() < 4, f"{peak():.1f} MiB"


async def test_a_dripping_token_endpoint_is_cut_at_the_deadline(hostile: HostileAS, tmp_path: Path) -> None:
    """A byte a second keeps each read alive: only a deadline for the whole exchange (10 s) ends it."""
    async with grants_at(hostile, tmp_path, "tick") as (grants, registrations):
        await hostile.mode(token="drip")
        start = time.monotonic()
        with anyio.fail_after(14), pytest.raises(TokenRequestError) as cut:
            await grants.token_request(registrations["tick"], REFRESH)
    assert 9.5 < time.monotonic() - start < 12
    assert f"{hostile.url} did not answer within 10 s" in str(cut.value) and not cut.value.refused


async def test_a_token_over_16_kib_is_refused_before_it_is_stored(hostile: HostileAS, tmp_path: Path) -> None:
    async with grants_at(hostile, tmp_path, "tick") as (grants, _):
        await grants.save("tick", SHARED, OAuthToken(access_token="old", refresh_token="rt"))
        await hostile.mode(token="big_token")  # a 40 KiB access token, in an answer within the 64 KiB cap
        with pytest.raises(LoginRequired) as refused:
            await grants.fresh("tick", SHARED, rejected="old")
        assert "an access token of 40 KiB, over the 16 KiB" in refused.value.why
        assert await grants.storage.get_grant("tick", SHARED) is None


# -- locks and stored grants ------------------------------------------------------------------------------------

async def test_a_refresh_at_a_dripping_server_does_not_hold_up_another_upstreams(hostile: HostileAS,
                                                                                   tmp_path: Path) -> None:
    """tick's authorization server drips its token answer while tick's refresh holds its lock; tock's refresh
    (another upstream, another lock name) goes through at once."""
    async with grants_at(hostile, tmp_path, "tick", "tock") as (grants, registrations):
        for name in ("tick", "tock"):
            await grants.save(name, SHARED, OAuthToken(access_token=f"{name}-old", refresh_token="rt"))
        await hostile.mode(drip_client=registrations["tick"].client.client_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: grants.fresh("tick", SHARED, rejected="tick-old"))
            await anyio.sleep(0.5)
            with anyio.fail_after(3):
                tock = await grants.fresh("tock", SHARED, rejected="tock-old")
            tg.cancel_scope.cancel()
    assert tock.tokens.access_token.startswith("good-")


HOLD = """
import asyncio, sys
from mcp_gateway.storage import PostgresStorage, SQLiteStorage

async def main() -> None:
    where, name = sys.argv[1:3]
    store = PostgresStorage(where) if where.startswith("postgres") else SQLiteStorage(where)
    async with store.exclusive(name):
        print("held", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.parametrize("backend", BACKENDS)
async def test_each_lock_name_is_its_own_lock(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds tick's lock: tock's is had at once, tick's waits and says another process holds it;
    within this process a task waiting for a name another task holds says so."""
    monkeypatch.setattr(stored_oauth, "LOCK_WAIT_S", 1.0)
    async with open_store(backend, tmp_path) as store:
        where = store.url if isinstance(store, PostgresStorage) else str(store.path)  # type: ignore[attr-defined]
        holder = subprocess.Popen([sys.executable, "-c", HOLD, where, "oauth-refresh:tick:"], stdout=subprocess.PIPE)
        try:
            assert holder.stdout is not None
            assert await anyio.to_thread.run_sync(holder.stdout.readline) == b"held\n"
            with anyio.fail_after(0.5):
                async with store.exclusive("oauth-refresh:tock:"):
                    pass
            with pytest.raises(StorageUnavailable, match="oauth-refresh:tick: is held by another process"):
                async with store.exclusive("oauth-refresh:tick:"):
                    pass
            held, done = anyio.Event(), anyio.Event()

            async def hold_tock() -> None:
                async with store.exclusive("oauth-refresh:tock:"):
                    held.set()
                    await done.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold_tock)
                await held.wait()
                with pytest.raises(StorageUnavailable, match="held by another task of this process"):
                    async with store.exclusive("oauth-refresh:tock:"):
                        pass
                with anyio.fail_after(0.5):
                    async with store.exclusive("oauth-refresh:tock:user:ann"):
                        pass
                done.set()
        finally:
            holder.kill()
            holder.wait()


async def test_a_grant_is_opened_once_and_a_huge_stored_one_never(hostile: HostileAS, tmp_path: Path) -> None:
    async with grants_at(hostile, tmp_path, "tick", registered=False) as (grants, _):
        await grants.save("tick", SHARED, OAuthToken(access_token="a1"))
        first = await grants.grant("tick", SHARED)
        assert first is not None and first is await grants.grant("tick", SHARED), "opened again"
        replica = Grants(grants.storage, grants.vault, grants.http)  # another replica refreshes: seen at once
        await replica.save("tick", SHARED, OAuthToken(access_token="a2"))
        again = await grants.grant("tick", SHARED)
        assert again is not None and again.tokens.access_token == "a2"

        # stored before tokens were capped (a hostile server's 50 MiB token): forgotten, never decrypted or parsed
        body = json.dumps({"tokens": {"access_token": "x" * 50 * MIB, "token_type": "Bearer"}, "expires_at": None})
        await grants.storage.put_grant("tick", SHARED, grants.vault.seal(body.encode(), f"grant:tick:{SHARED}"))
        del body
        with pytest.raises(LoginRequired):
            await grants.fresh("tick", SHARED)
        assert await grants.storage.get_grant("tick", SHARED) is None


# -- sign-in's introspection ---------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def signing_in(server: HostileAS) -> AsyncIterator[str]:
    """A gateway whose callers sign in at `server`, checked by introspection; yields its /mcp URL."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    await server.mode(resource=resource)
    gw = Gateway(make_config({}, keys={"ci": {"key": "static-key-0123456789", "groups": []}},
                             sign_in={"issuer": server.url, "resource": resource, "tokens": "introspection",
                                      "client_id": "gateway", "client_secret": "gateway-secret"}))
    async with gw, serve_gateway(gw, port):
        yield resource


async def post(resource: str, token: str) -> httpx2.Response:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(resource, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
                               headers={"accept": "application/json, text/event-stream",
                                        "authorization": f"Bearer {token}"})


async def all_at_once(resource: str, tokens: list[str]) -> list[httpx2.Response]:
    answers: list[httpx2.Response] = []

    async def one(token: str) -> None:
        answers.append(await post(resource, token))

    async with anyio.create_task_group() as tg:
        for token in tokens:
            tg.start_soon(one, token)
    return answers


async def test_a_refused_token_is_not_introspected_again(hostile: HostileAS) -> None:
    async with signing_in(hostile) as resource:
        await hostile.mode(reset=1)
        statuses = [(await post(resource, "garbage-token")).status_code for _ in range(10)]
        assert statuses == [401] * 10
        assert (await hostile.hits())["introspect"] == 1
        assert (await post(resource, "good-alice")).status_code == 200  # a good token is still asked about
        assert (await hostile.hits())["introspect"] == 2


async def test_requests_with_one_token_share_one_introspection(hostile: HostileAS) -> None:
    async with signing_in(hostile) as resource:
        await hostile.mode(reset=1, introspect_delay=0.5)
        answers = await all_at_once(resource, ["garbage-token"] * 20 + ["good-bob"] * 20)
        assert collections.Counter(a.status_code for a in answers) == {401: 20, 200: 20}
        assert (await hostile.hits())["introspect"] == 2


async def test_introspections_in_flight_are_capped_and_the_rest_fail_closed(hostile: HostileAS) -> None:
    """40 different tokens at once, each introspection taking 1.5 s: 8 are asked at a time; a token still
    waiting for its turn after 2 s gets 503 with Retry-After, never access."""
    async with signing_in(hostile) as resource:
        await hostile.mode(reset=1, introspect_delay=1.5)
        answers = await all_at_once(resource, [f"garbage-{n}" for n in range(40)])
        hits = await hostile.hits()
        statuses = collections.Counter(a.status_code for a in answers)
        assert hits["max_in_flight"] <= 8, hits
        assert set(statuses) == {401, 503} and statuses[401] >= 8, statuses
        assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 503)


async def test_the_providers_metadata_is_fetched_once_for_concurrent_requests(hostile: HostileAS) -> None:
    await hostile.mode(meta_delay=0.5)
    async with signing_in(hostile) as resource:
        await hostile.mode(reset=1)
        answers = await all_at_once(resource, [f"garbage-{n}" for n in range(20)])
        assert {a.status_code for a in answers} == {401}
        assert (await hostile.hits())["metadata"] == 1


# -- a running gateway (`mcp-gateway serve`) -----------------------------------------------------------------------

def status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


async def peak_growth(pid: int, action: Callable[[], Any]) -> tuple[Any, float]:
    """`await action()`, and how far it raised the process's peak memory (VmHWM) above its resident size."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    baseline = status_mib(pid, "VmRSS")
    out = await action()
    return out, status_mib(pid, "VmHWM") - baseline


async def test_a_running_gateway_refuses_a_huge_token_at_login_and_at_refresh(hostile: HostileAS,
                                                                              tmp_path: Path) -> None:
    """256 MiB token answers, at the login's callback and at a refresh, each cost the gateway little memory
    and end in a clear error; the login made in between keeps serving once the server answers sanely."""
    async with http_fixture("oauth_server", "http", hostile.url, "rs", "rs-secret") as upstream:
        await hostile.mode(resource=upstream, token="huge", huge_mb=256, expires_in=2)
        port = free_port()
        config = tmp_path / "gw.toml"
        config.write_text(f'[gateway]\nanonymous = true\nport = {port}\npublic_url = "http://127.0.0.1:{port}"\n'
                          f'state_dir = "{tmp_path / "state"}"\n[servers.up]\nurl = "{upstream}"\nmode = "direct"\n'
                          '[servers.up.oauth]\n')
        cli = [sys.executable, "-m", "mcp_gateway.cli"]
        with (tmp_path / "stderr").open("w") as log:
            gateway = subprocess.Popen([*cli, "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log)
        try:
            await wait_for_port(port, 30)

            async def log_in() -> httpx2.Response:
                link = subprocess.run([*cli, "auth", "login", "up", "--no-wait", "--config", str(config)],
                                      capture_output=True, text=True, check=True).stdout.split()[0]
                async with httpx2.AsyncClient(follow_redirects=True, timeout=60) as browser:
                    return await browser.get(link)

            page, growth = await peak_growth(gateway.pid, log_in)
            assert page.status_code == 400 and "is over 64 KiB" in page.text, page.text
            assert growth < 40, f"the login raised the gateway's peak memory by {growth:.0f} MiB"

            await hostile.mode(token="normal")
            assert "Logged in to up" in (await log_in()).text
            url = f"http://127.0.0.1:{port}/mcp"
            with anyio.fail_after(30):
                while not await _echoes(url):
                    await anyio.sleep(0.2)
            await hostile.mode(token="huge")
            await anyio.sleep(2)  # the access token (2 s) is due: the next call refreshes it
            failed, growth = await peak_growth(gateway.pid, lambda: _call(url))
            assert failed.is_error
            assert growth < 40, f"the refresh raised the gateway's peak memory by {growth:.0f} MiB"
            listed = subprocess.run([*cli, "auth", "list", "--config", str(config)], capture_output=True, text=True,
                                    check=True).stdout
            assert "up" in listed.split(), listed  # the login is kept for the next attempt
        finally:
            gateway.terminate()
            gateway.wait(timeout=20)
    logged = (tmp_path / "stderr").read_text()
    assert "oauth refresh failed: the login is kept" in logged and "is over 64 KiB" in logged


async def _call(url: str) -> Any:
    async with key_client(url) as client:
        return await client.call_tool("up_echo", {"text": "hi"})


async def _echoes(url: str) -> bool:
    """Whether a call of `up.echo` works (the upstream is connected with a login)."""
    try:
        result = await _call(url)
    except Exception:
        return False
    return not result.is_error
