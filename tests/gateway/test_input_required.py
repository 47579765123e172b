"""Approvals for 2026-07-28 clients: the call is answered with an input-required result carrying the
question, the SDK client asks its user (its elicitation callback) and retries with the answer."""

from __future__ import annotations

import contextlib
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from mcp_gateway import Gateway
from tests.helpers import http_fixture, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio


def gateway() -> Gateway:
    return Gateway(make_config({"math": stdio("math_server", mode="direct"), "calc": stdio("math_server")},
                               tools={"math.add": {"approval": "always"}, "calc.add": {"approval": "always"}}))


@pytest.mark.parametrize("action", ["accept", "decline", "cancel"])
async def test_a_direct_call_is_approved_through_the_clients_retry(action: str) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action=action, content={} if action == "accept" else None)  # type: ignore[arg-type]

    gw = gateway()
    async with serve_gateway(gw) as url, Client(url, elicitation_callback=on_elicit) as client:
        out = await client.call_tool("math_add", {"a": 2, "b": 3})
    assert asked == ["Allow the tool call math.add?\n  a = 2\n  b = 3"]
    if action == "accept":
        assert out.structured_content == {"result": 5}
    else:
        said = "it was not given: the question was cancelled" if action == "cancel" else "the user answered decline"
        assert out.is_error and f"needs the user's approval, and {said}" in text_of(out)
    rows = [(r.tool, r.outcome, r.approval) for r in await gw.storage.query_audit() if r.kind == "tool"]
    assert rows[0] == ("add", "input_required", None)
    assert rows[1] == ("add", "ok", "accept") if action == "accept" else rows[1][1] == "ApprovalRefused"


async def test_an_answer_counts_only_for_the_arguments_it_was_asked_about() -> None:
    gw = gateway()
    async with serve_gateway(gw) as url, Client(url, elicitation_callback=_accept) as client:
        session = client.session
        first = await session.call_tool("math_add", {"a": 1, "b": 1}, allow_input_required=True)  # type: ignore[call-arg]
        assert isinstance(first, types.InputRequiredResult) and first.request_state
        forged = await session.call_tool(  # type: ignore[call-arg]
            "math_add", {"a": 1000, "b": 1}, allow_input_required=True,
            input_responses={"mcp-gateway/approval": types.ElicitResult(action="accept", content={})},
            request_state=first.request_state,
        )
    assert isinstance(forged, types.InputRequiredResult), "the answer was for other arguments: asked again"


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_a_script_pauses_for_the_answer_and_its_earlier_calls_are_not_made_again(action: str) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action=action, content={} if action == "accept" else None)  # type: ignore[arg-type]

    code = 'first = calc.echo(text="once")\nresult = [first, calc.add(a=1, b=2), calc.add(a=3, b=4)]'
    gw = gateway()
    async with serve_gateway(gw) as url, Client(url, elicitation_callback=on_elicit) as client:
        out = await client.call_tool("executeToolCode", {"code": code})
    rows = [(r.tool, r.outcome) for r in await gw.storage.query_audit() if r.kind == "tool"]
    assert rows.count(("echo", "ok")) == 1, rows  # made in the first round, answered from the journal after
    if action == "accept":
        assert text_of(out) == 'result = ["once", 3, 7]'
        assert asked == ["Allow the tool call calc.add?\n  a = 1\n  b = 2",
                         "Allow the tool call calc.add?\n  a = 3\n  b = 4"]
        assert rows.count(("add", "ok")) == 2 and rows.count(("add", "input_required")) == 2
    else:
        assert out.is_error and "needs the user's approval, and the user answered decline" in text_of(out)
        assert len(asked) == 1 and ("add", "ok") not in rows


async def test_a_retry_for_another_keys_or_an_expired_pause_is_refused() -> None:
    gw = gateway()
    async with serve_gateway(gw) as url, Client(url, elicitation_callback=_accept) as client:
        out = await client.session.call_tool(  # type: ignore[call-arg]
            "executeToolCode", {"code": "result = calc.add(a=1, b=2)"}, allow_input_required=True,
            input_responses={"mcp-gateway/approval": types.ElicitResult(action="accept", content={})},
            request_state="script:made-up",
        )
    assert out.is_error and "the paused script cannot be continued" in text_of(out)  # type: ignore[union-attr]


async def test_a_client_without_elicitation_is_told_it_cannot_be_asked() -> None:
    async with serve_gateway(gateway()) as url, Client(url) as client:
        out = await client.call_tool("math_add", {"a": 2, "b": 3})
    assert out.is_error and "this client cannot ask (no elicitation)" in text_of(out)


async def _accept(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={})


@pytest.mark.parametrize("upstream", ["http", "stdio-legacy"])
async def test_an_upstreams_elicitation_and_sampling_reach_a_2026_client_through_its_retry(upstream: str) -> None:
    """A 2026-07-28 upstream asks with its own input-required result, a 2025-11-25 one mid-call: either way the
    gateway puts the question to the client as an input-required round and answers the upstream on the retry."""
    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"username": "ann", "email": "ann@example.com"})

    async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="forty-two"),
                                         model="scripted")

    transport, _, era = upstream.partition("-")
    args = ("--legacy",) if era else ()
    async with contextlib.AsyncExitStack() as stack:
        if transport == "http":
            url = await stack.enter_async_context(http_fixture("conformance_server", "http", *args))
            server: dict[str, Any] = {"url": url, "mode": "direct"}
        else:
            server = stdio("conformance_server", "stdio", *args, mode="direct")
        gw = Gateway(make_config({"conformance": server}, gateway={"prefix_direct_tools": False}))
        gw_url = await stack.enter_async_context(serve_gateway(gw))
        client = await stack.enter_async_context(
            Client(gw_url, elicitation_callback=on_elicit, sampling_callback=on_sample))
        elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        sampled = await client.call_tool("test_sampling", {"prompt": "What is six times seven?"})
    assert not elicited.is_error and "action=accept" in text_of(elicited) and "ann@example.com" in text_of(elicited)
    assert not sampled.is_error and "LLM response: forty-two" in text_of(sampled)
    assert asked == ["Who are you?", "sampling"]
    rows = [r.outcome for r in await gw.storage.query_audit() if r.kind == "tool"]
    assert rows == ["input_required", "ok", "input_required", "ok"]


async def test_a_script_whose_results_outgrow_the_journal_says_it_cannot_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    import mcp_gateway.codemode.scripts as scripts

    monkeypatch.setattr(scripts, "MAX_JOURNAL_BYTES", 10)  # kept results are bounded; here, tiny
    async with serve_gateway(gateway()) as url, Client(url, elicitation_callback=_accept) as client:
        out = await client.call_tool("executeToolCode",
                                     {"code": 'x = calc.echo(text="more than ten bytes")\nresult = calc.add(a=1, b=2)'})
    assert out.is_error and "cannot pause for it" in text_of(out) and "more than a paused script keeps" in text_of(out)
