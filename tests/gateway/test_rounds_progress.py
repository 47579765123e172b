"""Progress and cancellation of calls that pause for the user's input (2026-07-28 input-required rounds).

Each round of such a call is a request of its own, with its own progress token: what the upstream
reports while a round runs reaches that round's token, and nothing reaches an earlier one. A client
that cancels a round (it closes the HTTP request, or sends `notifications/cancelled`) cancels the
upstream call, and the audit row says so; a paused script cancelled on its retry runs nothing more.
The upstream is `rounds_server.py`, next to this file.
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

from mcp_gateway import Gateway, build_server
from tests.gateway.local_upstreams import local_upstream
from tests.helpers import eventually, make_config, serve_gateway, text_of

pytestmark = pytest.mark.anyio

ACCEPT = types.ElicitResult(action="accept", content={})


def gateway(server: dict[str, Any]) -> Gateway:
    return Gateway(make_config({"rounds": server, "calc": {**server, "mode": "code"}},
                               gateway={"prefix_direct_tools": False},
                               tools={"rounds.work": {"approval": "always"}, "calc.work": {"approval": "always"}}))


@contextlib.asynccontextmanager
async def served(upstream: str) -> AsyncIterator[tuple[Gateway, str]]:
    async with local_upstream("rounds", upstream, mode="direct") as server:
        gw = gateway(server)
        async with serve_gateway(gw) as url:
            yield gw, url


def noting(seen: list[str]) -> Any:
    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    return progress


async def accept(context: Any, params: Any) -> types.ElicitResult:
    return ACCEPT


async def never(context: Any, params: Any) -> types.ElicitResult:
    """A user who never answers."""
    await anyio.sleep_forever()
    raise AssertionError


async def events(client: Client) -> list[str]:
    return list(json.loads(text_of(await client.call_tool("events", {}))))


async def outcomes(gw: Gateway, tool: str) -> list[str]:
    return [r.outcome for r in await gw.storage.query_audit(tool=tool)]


async def step(client: Client, tool: str, arguments: dict[str, Any], after: types.InputRequiredResult | None = None,
               progress: list[str] | None = None) -> types.CallToolResult | types.InputRequiredResult:
    """One round by hand: the first, or the retry `after` an input-required result (every question accepted)."""
    answers: types.InputResponses = {key: ACCEPT for key in (after.input_requests or {})} if after else {}
    callback = noting(progress) if progress is not None else None
    out = await client.session.call_tool(tool, arguments, allow_input_required=True, progress_callback=callback,
                                         input_responses=answers or None,
                                         request_state=after.request_state if after else None)
    assert isinstance(out, types.CallToolResult | types.InputRequiredResult)
    return out


async def rounds(client: Client, tool: str, arguments: dict[str, Any], *progress: list[str]) -> types.CallToolResult:
    """Drive the rounds by hand, one progress list per round."""
    after: types.InputRequiredResult | None = None
    for seen in progress:
        out = await step(client, tool, arguments, after, seen)
        if isinstance(out, types.CallToolResult):
            return out
        after = out
    raise AssertionError("more rounds than expected")


@pytest.mark.parametrize("upstream", ["http", "stdio", "http-legacy", "stdio-legacy"])
async def test_progress_reaches_the_round_it_belongs_to(upstream: str) -> None:
    async with served(upstream) as (_, url), Client(url, elicitation_callback=accept) as client:
        approval: tuple[list[str], list[str]] = ([], [])
        out = await rounds(client, "work", {"seconds": 0}, *approval)
        assert text_of(out) == "worked"
        await eventually(lambda: approval == ([], ["working", "worked"]), 5)

        asked: tuple[list[str], list[str]] = ([], [])
        out = await rounds(client, "ask", {"seconds": 0}, *asked)
        assert text_of(out) == "answered accept"
        again = [] if upstream.endswith("legacy") else ["asking"]  # a 2026-07-28 upstream: asked afresh, answered
        await eventually(lambda: asked == (["asking"], [*again, "asking", "answered accept", "done"]), 5)

        driven: list[str] = []  # the SDK's own loop: one callback for every round
        out = await client.call_tool("ask", {"seconds": 0}, progress_callback=noting(driven))
        await eventually(lambda: driven == ["asking", *again, "asking", "answered accept", "done"], 5)


@pytest.mark.parametrize("upstream", ["http", "stdio-legacy"])
async def test_a_2025_client_has_one_request_for_its_progress_and_its_cancelling(upstream: str) -> None:
    """No rounds in the handshake era: the questions are asked during the call, which is one request."""
    async with served(upstream) as (gw, url), Client(url, mode="legacy", elicitation_callback=accept) as client, \
            Client(url, mode="legacy", elicitation_callback=never) as silent:
        seen: list[str] = []
        out = await client.call_tool("work", {"seconds": 0}, progress_callback=noting(seen))
        assert text_of(out) == "worked"
        await eventually(lambda: seen == ["working", "worked"], 5)
        seen.clear()
        out = await client.call_tool("ask", {"seconds": 0}, progress_callback=noting(seen))
        assert text_of(out) == "answered accept"
        again = [] if upstream.endswith("legacy") else ["asking"]  # the gateway's own client answers its retry
        await eventually(lambda: seen == ["asking", *again, "answered accept", "done"], 5)
        with anyio.move_on_after(2):
            await client.call_tool("ask", {"seconds": 30})
        await eventually(lambda: _has(client, "ask cancelled"), 10)
        await eventually(lambda: _outcomes_are(gw, "ask", ["ok", "cancelled"]), 10)
        with anyio.move_on_after(1):  # cancelled while its user is asked for the approval
            await silent.call_tool("work", {"seconds": 30})
        await eventually(lambda: _outcomes_are(gw, "work", ["ok", "cancelled"]), 10)
        assert (await events(client)).count("work started") == 1


async def test_a_scripts_progress_reaches_the_round_it_belongs_to() -> None:
    """A script reports its own progress (its tool calls so far), on the token of the round it runs in."""
    code = "before = calc.events()\nresult = calc.work(seconds=0)"
    async with served("http") as (_, url), Client(url, elicitation_callback=accept) as client:
        seen: tuple[list[str], list[str]] = ([], [])
        out = await rounds(client, "executeToolCode", {"code": code}, *seen)
        assert text_of(out) == 'result = "worked"'
        calls = ["1 tool calls; last: calc.events", "2 tool calls; last: calc.work"]
        await eventually(lambda: seen == (calls[:1], calls), 5)  # the call that paused is not counted


@pytest.mark.parametrize(("upstream", "tool"), [("http", "work"), ("http", "ask"), ("stdio-legacy", "ask")])
async def test_cancelling_the_retry_cancels_the_upstream_call(upstream: str, tool: str) -> None:
    async with served(upstream) as (gw, url), Client(url, elicitation_callback=accept) as client:
        with anyio.move_on_after(2):
            await client.call_tool(tool, {"seconds": 30})
        await eventually(lambda: _has(client, f"{tool} cancelled"), 10)
        await eventually(lambda: _outcomes_are(gw, tool, ["input_required", "cancelled"]), 10)


async def test_notifications_cancelled_cancels_the_retry() -> None:
    """In process, the client cancels with `notifications/cancelled` (over HTTP it closes the request)."""
    async with local_upstream("rounds", "stdio", mode="direct") as server:
        gw = gateway(server)
        async with Client(build_server(gw), elicitation_callback=accept) as client:
            with anyio.move_on_after(2):
                await client.call_tool("work", {"seconds": 30})
            await eventually(lambda: _has(client, "work cancelled"), 10)
            await eventually(lambda: _outcomes_are(gw, "work", ["input_required", "cancelled"]), 10)


async def test_a_script_cancelled_on_its_retry_runs_nothing_more() -> None:
    code = "first = calc.work(seconds=0)\nresult = [first, calc.work(seconds=30)]"
    async with served("http") as (gw, url), Client(url, elicitation_callback=accept) as client:
        first = await step(client, "executeToolCode", {"code": code})
        assert isinstance(first, types.InputRequiredResult)
        second = await step(client, "executeToolCode", {"code": code}, first)
        assert isinstance(second, types.InputRequiredResult)  # the first call made, the second one's question
        with anyio.move_on_after(2):
            await step(client, "executeToolCode", {"code": code}, second)
        await eventually(lambda: _outcomes_are(gw, "executeToolCode", ["input_required"] * 2 + ["cancelled"]), 10)
        await eventually(lambda: _outcomes_are(gw, "work", ["input_required", "ok", "input_required", "cancelled"]),
                         10)
        before = await events(client)
        assert before.count("work cancelled") == 1
        for after in (second, first):  # the cancelled retry again, and the one that already continued
            with anyio.fail_after(5):
                again = await step(client, "executeToolCode", {"code": code}, after)
            assert isinstance(again, types.CallToolResult) and again.is_error
            assert "cannot be continued (an earlier retry continued it, or was cancelled)" in text_of(again)
        assert await events(client) == before


async def test_a_client_that_gives_up_while_paused_leaves_nothing_running() -> None:
    """While the client asks its user no request is in flight: giving up sends nothing, and nothing runs."""
    async with served("http") as (gw, url), Client(url, elicitation_callback=never) as client:
        calls: list[tuple[str, dict[str, Any]]] = [("work", {"seconds": 30}),
                                                   ("executeToolCode", {"code": "result = calc.work()"})]
        for name, arguments in calls:
            with anyio.move_on_after(1):
                await client.call_tool(name, arguments)
        await anyio.sleep(0.5)
        assert await events(client) == []
        assert await outcomes(gw, "work") == ["input_required", "input_required"]
        assert await outcomes(gw, "executeToolCode") == ["input_required"]


async def _has(client: Client, event: str) -> bool:
    return event in await events(client)


async def _outcomes_are(gw: Gateway, tool: str, expected: list[str]) -> bool:
    return await outcomes(gw, tool) == expected

