"""Approvals for 2026-07-28 clients: the call is answered with an input-required result carrying the
question, the SDK client asks its user (its elicitation callback) and retries with the answer."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from mcp_gateway import Gateway
from tests.helpers import make_config, serve_gateway, stdio, text_of

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
        assert out.is_error and f"needs the user's approval, and the user answered {action}" in text_of(out)
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


async def test_inside_a_script_the_approval_is_refused_with_what_to_do() -> None:
    async with serve_gateway(gateway()) as url, Client(url, elicitation_callback=_accept) as client:
        out = await client.call_tool("executeToolCode", {"code": "result = calc.add(a=1, b=2)"})
    assert "can give for a direct call but not yet from inside a script: call calc.add directly" in text_of(out)


async def test_a_client_without_elicitation_is_told_it_cannot_be_asked() -> None:
    async with serve_gateway(gateway()) as url, Client(url) as client:
        out = await client.call_tool("math_add", {"a": 2, "b": 3})
    assert out.is_error and "this client cannot ask (no elicitation)" in text_of(out)


async def _accept(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={})
