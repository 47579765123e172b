"""Client roots passed on to the upstreams that opted in (`roots = true`), each caller's to its own calls.

Upstreams are `roots_server.py` (next to this file) in both eras, over stdio and streamable HTTP; the
gateway's clients are SDK clients of both eras, with and without roots. What an upstream is given
during a call is the calling client's roots (asked mid-call of a 2025-11-25 client, through the
input-required round and its retry for a 2026-07-28 one); outside any call, an empty list.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning

from mcp_gateway import Gateway
from mcp_gateway.server.shared import shared_state
from mcp_gateway.upstream import Upstream
from mcp_gateway.upstream_client import NobodyToAsk, Seen
from tests.gateway.local_upstreams import local_upstream
from tests.helpers import eventually, make_config, serve_gateway, text_of

pytestmark = pytest.mark.anyio

UPSTREAMS = ["http", "stdio", "http-legacy", "stdio-legacy"]


@contextlib.asynccontextmanager
async def served(upstream: str) -> AsyncIterator[str]:
    """`fs` with roots on and `plain` with them off, the same fixture; the gateway's /mcp URL."""
    async with contextlib.AsyncExitStack() as stack:
        fs = await stack.enter_async_context(local_upstream("roots", upstream, mode="direct", roots=True))
        plain = await stack.enter_async_context(local_upstream("roots", upstream, mode="direct"))
        yield await stack.enter_async_context(serve_gateway(Gateway(make_config({"fs": fs, "plain": plain}))))


def roots_of(*uris: str, delay_s: float = 0.0) -> Any:
    """A client's `list_roots_callback` (slow by `delay_s`, so that several callers' questions overlap)."""
    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        await anyio.sleep(delay_s)
        return types.ListRootsResult(roots=[types.Root(uri=uri) for uri in uris])  # type: ignore[arg-type]

    return list_roots


async def seen_by(client: Client, tool: str = "fs_roots") -> dict[str, Any]:
    result = await client.call_tool(tool, {})
    assert not result.is_error, text_of(result)
    found: dict[str, Any] = json.loads(text_of(result))
    return found


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_each_client_gives_its_own_roots(upstream: str) -> None:
    async with served(upstream) as url, \
            Client(url, mode="legacy", list_roots_callback=roots_of("file:///home/alice")) as alice, \
            Client(url, list_roots_callback=roots_of("file:///home/bob", "file:///srv/bob")) as bob, \
            Client(url, mode="legacy") as carol, Client(url) as dave:
        assert await seen_by(alice) == {"declared": True, "roots": ["file:///home/alice"]}
        assert await seen_by(bob) == {"declared": True, "roots": ["file:///home/bob", "file:///srv/bob"]}
        assert await seen_by(carol) == {"declared": True, "roots": []}  # no roots capability: none to give
        assert await seen_by(dave) == {"declared": True, "roots": []}
        for client in (alice, bob, carol, dave):  # `roots = false`: the capability is not declared
            assert await seen_by(client, "plain_roots") == {"declared": False}


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_callers_at_the_same_time_never_get_each_others_roots(upstream: str) -> None:
    """Over stdio a 2025-11-25 upstream's `roots/list` comes outside any call: with two calls to it in flight
    it cannot be pinned on one, and gets an empty list; everywhere else each caller gets its own."""
    results: dict[str, list[str]] = {}
    async with served(upstream) as url:

        async def call(name: str, mode: str) -> None:
            async with Client(url, mode=mode, list_roots_callback=roots_of(f"file:///home/{name}", delay_s=0.3)) as c:
                results[name] = (await seen_by(c))["roots"]

        async with anyio.create_task_group() as tg:
            for name, mode in (("alice", "legacy"), ("ann", "legacy"), ("bob", "auto"), ("bea", "auto")):
                tg.start_soon(call, name, mode)
    for name, got in results.items():
        assert got == [f"file:///home/{name}"] or (upstream == "stdio-legacy" and got == []), results
    assert len(results) == 4


@pytest.mark.parametrize("upstream", ["http", "stdio-legacy"])
async def test_a_script_gets_the_roots_of_the_client_that_runs_it(upstream: str) -> None:
    """Code Mode: a 2026-07-28 client's script pauses at the call that asked, and its retry answers it."""
    async with local_upstream("roots", upstream, mode="code", roots=True) as fs, \
            serve_gateway(Gateway(make_config({"fs": fs}))) as url, \
            Client(url, list_roots_callback=roots_of("file:///home/bob")) as bob, \
            Client(url, mode="legacy", list_roots_callback=roots_of("file:///home/alice")) as alice:
        for client, uri in ((bob, "file:///home/bob"), (alice, "file:///home/alice")):
            result = await client.call_tool("executeToolCode", {"code": "result = fs.roots()"})
            assert not result.is_error, text_of(result)
            assert text_of(result) == f'result = {{"declared": true, "roots": ["{uri}"]}}'


async def test_outside_any_call_the_upstream_gets_an_empty_list() -> None:
    """The upstream asks at `notifications/initialized`, as the filesystem server does. (Over stdio: a
    streamable HTTP server of the SDK loses such a request, now and then, when it is sent before the
    client's GET stream is open, with the SDK's own client too.)"""
    async with served("stdio-legacy") as url, \
            Client(url, mode="legacy", list_roots_callback=roots_of("file:///home/alice")) as alice:
        asked: list[Any] = []

        async def answered() -> bool:  # asked in the background
            asked[:] = json.loads(text_of(await alice.call_tool("fs_at_connect", {})))
            return bool(asked)

        await eventually(answered, 10, every_s=0.2)
        assert asked == [[]]
        with pytest.warns(MCPDeprecationWarning):  # roots are deprecated as of 2026-07-28
            await alice.send_roots_list_changed()  # not passed on (see docs/protocol.md); the session goes on
        assert await seen_by(alice) == {"declared": True, "roots": ["file:///home/alice"]}


async def test_per_user_sessions_and_check_declare_roots_as_the_shared_session_does() -> None:
    """Only `roots = true` gives the SDK client a roots callback (from which it declares the capability)."""
    config = make_config({
        "on": {"url": "http://127.0.0.1:9/mcp", "roots": True, "oauth": {"identity": "per_user"}},
        "off": {"url": "http://127.0.0.1:9/mcp", "oauth": {"identity": "per_user"}},
    })
    gw = Gateway(config)
    shared_state(gw)  # the hooks every session's options come from
    on, off = gw.upstream("on"), gw.upstream("off")
    assert on.personal is not None and off.personal is not None
    assert "list_roots_callback" in on.client_options(Seen())
    assert "list_roots_callback" in on.personal.options(Seen())
    assert "list_roots_callback" not in off.client_options(Seen())
    assert "list_roots_callback" not in off.personal.options(Seen())
    check = NobodyToAsk("mcp-gateway check")  # `check` answers as `serve` does outside any call
    on_checked = Upstream("on", on.config, hooks=check).client_options(Seen())
    assert "list_roots_callback" not in Upstream("off", off.config, hooks=check).client_options(Seen())
    answer = await on_checked["list_roots_callback"](None)  # type: ignore[arg-type]
    assert answer == types.ListRootsResult(roots=[])
