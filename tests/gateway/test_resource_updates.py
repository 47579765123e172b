"""Resource updates through the gateway: a subscription of a 2025-11-25 client (`resources/subscribe`) or a
2026-07-28 client (`subscriptions/listen`) reaches the owning upstream whatever its era (its own listen
stream, or `resources/subscribe`), and each update reaches exactly the subscribed clients that may still use
that upstream. The upstream is `tests/fixtures/updating_server.py`; `notes_watched` tells what it is
subscribed to."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError

from mcp_gateway import Gateway
from mcp_gateway.server import subscribers
from tests.helpers import (
    FIXTURES,
    eventually,
    free_port,
    http_fixture,
    key_client,
    make_config,
    serve_gateway,
    stdio,
    text_of,
    wait_for_port,
)

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")]

ANN, BOB, OPS = "ann-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
GROUPS = {"notes": {"tools": ["notes.*"]}, "other": {"tools": ["other.*"]}}
FAST = {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, "health_interval_s": 0.5}


@dataclass
class Subscriber:
    """One client subscribed to some URIs: the URIs of the updates it received, and how it stops."""

    client: Client
    got: list[str]
    stop: Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def subscribed(url: str, era: str, uris: list[str], key: str | None = None) -> AsyncIterator[Subscriber]:
    """A client of `era` ("2025": `resources/subscribe`; "2026": `subscriptions/listen`) subscribed to `uris`."""
    got: list[str] = []
    if era == "2025":
        async def on_message(message: Any) -> None:
            if isinstance(message, types.ResourceUpdatedNotification):
                got.append(message.params.uri)

        async with key_client(url, key, mode="legacy", message_handler=on_message) as client:
            for uri in uris:
                await client.subscribe_resource(uri)

            async def unsubscribe() -> None:
                for uri in uris:
                    await client.unsubscribe_resource(uri)

            yield Subscriber(client, got, unsubscribe)
        return
    async with key_client(url, key) as client, contextlib.AsyncExitStack() as listening, \
            anyio.create_task_group() as tg:
        stream = await listening.enter_async_context(client.listen(resource_subscriptions=uris))
        assert stream.honored.resource_subscriptions == uris

        async def collect() -> None:
            with contextlib.suppress(Exception):
                async for event in stream:
                    if isinstance(event, ResourceUpdated):
                        got.append(event.uri)

        tg.start_soon(collect)

        async def leave() -> None:
            tg.cancel_scope.cancel()
            await listening.aclose()

        yield Subscriber(client, got, leave)
        tg.cancel_scope.cancel()


async def watched(client: Client) -> list[str]:
    """What the upstream is subscribed to now, asked through the gateway."""
    return list(json.loads(text_of(await client.call_tool("notes_watched", {}))))


async def touch(client: Client, uri: str) -> None:
    out = await client.call_tool("notes_touch", {"uri": uri})
    assert not out.is_error, text_of(out)


async def watching(client: Client, expected: list[str]) -> None:
    """Wait until the upstream is subscribed to exactly `expected`."""
    async def now() -> bool:
        try:
            return await watched(client) == expected
        except Exception:  # the upstream is not back yet
            return False

    await eventually(now, 15)


async def settled() -> None:
    """Wait long enough for an update that is coming to have come (for asserting that one did not)."""
    await anyio.sleep(0.5)


@contextlib.asynccontextmanager
async def notes_upstream(upstream: str) -> AsyncIterator[dict[str, Any]]:
    """The `[servers.notes]` table for `http`, `stdio`, `http-legacy` or `stdio-legacy`."""
    transport, _, era = upstream.partition("-")
    args = ("--legacy",) if era else ()
    if transport == "stdio":
        yield stdio("updating_server", "stdio", *args, mode="direct")
        return
    async with http_fixture("updating_server", "http", *args) as url:
        yield {"url": url, "mode": "direct"}


@pytest.mark.parametrize("upstream", ["http", "stdio", "http-legacy", "stdio-legacy"])
async def test_clients_of_both_eras_get_the_updates_they_subscribed_to_until_they_stop(upstream: str) -> None:
    async with notes_upstream(upstream) as server, serve_gateway(Gateway(make_config({"notes": server}))) as url, \
            subscribed(url, "2025", ["note://a"]) as old, subscribed(url, "2026", ["note://a", "note://b"]) as new:
        toucher = new.client
        assert await watched(toucher) == ["note://a", "note://b"]
        started = time.perf_counter()
        await touch(toucher, "note://a")
        await eventually(lambda: old.got == ["note://a"] and new.got == ["note://a"], 5)
        print(f"{upstream}: update relayed to both clients in {(time.perf_counter() - started) * 1000:.0f} ms")
        await touch(toucher, "note://b")
        await eventually(lambda: new.got == ["note://a", "note://b"], 5)
        assert old.got == ["note://a"], "not subscribed to note://b"
        read = await old.client.read_resource("note://a")
        assert read.contents[0].text == "note://a version 1"  # type: ignore[union-attr]

        await old.stop()
        await touch(toucher, "note://a")
        await eventually(lambda: new.got.count("note://a") == 2, 5)
        await new.stop()
        await watching(toucher, [])  # the last subscriber gone: the upstream's subscription goes too
        await touch(toucher, "note://a")
        await settled()
        assert old.got == ["note://a"] and new.got.count("note://a") == 2


async def test_only_keys_that_may_use_the_upstream_subscribe_or_hear_of_updates() -> None:
    keys = {"ann": {"key": ANN, "groups": ["notes"]}, "bob": {"key": BOB, "groups": ["other"]}}
    config = make_config({"notes": stdio("updating_server", mode="direct")}, groups=GROUPS, keys=keys)
    async with serve_gateway(Gateway(config)) as url, subscribed(url, "2026", ["note://a"], ANN) as ann, \
            subscribed(url, "2026", ["note://a"], BOB) as bob:
        async with key_client(url, BOB, mode="legacy") as bob_old:
            with pytest.raises(MCPError, match="Resource not found"):
                await bob_old.subscribe_resource("note://a")
        await touch(ann.client, "note://a")
        await eventually(lambda: ann.got == ["note://a"], 5)
        await settled()
        assert bob.got == [], "bob's listen was acknowledged, like one for a URI that does not exist, and stays silent"


async def test_a_key_revoked_or_moved_out_of_the_group_stops_receiving() -> None:
    keys = {"ann": {"key": ANN, "groups": ["notes"]}, "ops": {"key": OPS, "groups": ["notes"]}}
    config = make_config({"notes": stdio("updating_server", mode="direct")}, groups=GROUPS, keys=keys)
    gw = Gateway(config)
    async with serve_gateway(gw) as url:
        cat = await gw.keys.create("cat", None, ["notes"])
        async with subscribed(url, "2025", ["note://a"], ANN) as ann, \
                subscribed(url, "2026", ["note://a"], cat) as cat_sub, \
                subscribed(url, "2025", ["note://a"], OPS) as ops:
            await touch(ops.client, "note://a")
            await eventually(lambda: ann.got == cat_sub.got == ops.got == ["note://a"], 5)

            moved = {**keys, "ann": {"key": ANN, "groups": ["other"]}}
            gw.apply_governance(make_config({"notes": stdio("updating_server", mode="direct")}, groups=GROUPS,
                                            keys=moved))
            await touch(ops.client, "note://a")
            await eventually(lambda: len(ops.got) == 2 and len(cat_sub.got) == 2, 5)
            await settled()
            assert ann.got == ["note://a"], "ann left the group that sees notes"

            assert await gw.storage.revoke_key("cat")
            await anyio.sleep(1.1)  # a confirmed key counts as not revoked for a second (`keys.RECHECK_S`)
            await touch(ops.client, "note://a")
            await eventually(lambda: len(ops.got) == 3, 5)
            await settled()
            assert cat_sub.got == ["note://a"] * 2, "cat's key was revoked"


async def test_a_keys_subscriptions_are_capped_and_a_closed_connection_lets_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscribers, "MAX_SUBSCRIPTIONS_PER_KEY", 1)
    async with serve_gateway(Gateway(make_config({"notes": stdio("updating_server", mode="direct")}))) as url, \
            key_client(url) as toucher:
        async with subscribed(url, "2025", ["note://a"]) as first:
            with pytest.raises(MCPError, match="the most one key may hold"):
                await first.client.subscribe_resource("note://b")
            with pytest.raises(MCPError, match="the most one key may hold"):
                async with toucher.listen(resource_subscriptions=["note://b"]):
                    pass
            assert await watched(toucher) == ["note://a"]
        await watching(toucher, [])
        async with subscribed(url, "2026", ["note://b"]):
            assert await watched(toucher) == ["note://b"]


@contextlib.asynccontextmanager
async def restartable(port: int, *args: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The fixture over HTTP on `port`; yields a function that kills it and starts it again on the same port."""
    command = [sys.executable, str(FIXTURES / "updating_server.py"), "http", str(port), *args]
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]

    async def restart() -> None:
        procs[-1].kill()
        procs[-1].wait(timeout=10)
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await wait_for_port(port)

    try:
        await wait_for_port(port)
        yield restart
    finally:
        procs[-1].kill()
        procs[-1].wait(timeout=10)


@pytest.mark.parametrize("era", ["2026", "2025"])
async def test_the_upstream_restarting_is_subscribed_again(era: str) -> None:
    port = free_port()
    async with restartable(port, *(("--legacy",) if era == "2025" else ())) as restart:
        server = {"url": f"http://127.0.0.1:{port}/mcp", "mode": "direct"}
        gw = Gateway(make_config({"notes": server}, gateway=FAST))
        async with serve_gateway(gw) as url, subscribed(url, "2025", ["note://a"]) as old, \
                subscribed(url, "2026", ["note://a"]) as new:
            await restart()
            started = time.perf_counter()
            await watching(new.client, ["note://a"])
            print(f"{era} upstream: subscribed again {(time.perf_counter() - started) * 1000:.0f} ms after restart")
            await touch(new.client, "note://a")
            await eventually(lambda: old.got == new.got == ["note://a"], 5)


async def test_a_listen_the_upstream_ends_is_opened_again_while_clients_still_subscribe() -> None:
    gw = Gateway(make_config({"notes": stdio("updating_server", mode="direct")}, gateway=FAST))
    async with serve_gateway(gw) as url, subscribed(url, "2025", ["note://a"]) as old:

        async def opened() -> int:
            return int(text_of(await old.client.call_tool("notes_opened", {})))

        assert await opened() == 1
        assert not (await old.client.call_tool("notes_hang_up", {})).is_error
        started = time.perf_counter()
        async def opened_again() -> bool:
            return await opened() == 2

        await eventually(opened_again, 5)
        print(f"listen opened again {(time.perf_counter() - started) * 1000:.0f} ms after the upstream ended it")
        await watching(old.client, ["note://a"])
        await touch(old.client, "note://a")
        await eventually(lambda: old.got == ["note://a"], 5)
