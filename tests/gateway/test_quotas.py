"""Rate limits, budgets and approvals, through a real SDK client over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from mcp_gateway import Gateway
from tests.helpers import key_client, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio
KEY = "quota-key-0123456789"


@contextlib.asynccontextmanager
async def client_for(config: Any, **client_args: Any) -> AsyncIterator[tuple[Gateway, Client]]:
    gw = Gateway(config)
    async with serve_gateway(gw) as url, key_client(url, KEY, **client_args) as client:
        yield gw, client


def keyed(key_quotas: dict[str, Any], team_quotas: dict[str, Any] | None = None, **extra: Any) -> Any:
    return make_config(
        {"math": stdio("math_server", mode="direct")},
        groups={"all": {"tools": ["*"]}},
        teams={"t": {"groups": ["all"], **(team_quotas or {})}},
        keys={"k": {"key": KEY, "team": "t", **key_quotas}},
        **extra,
    )


async def test_calls_per_minute_names_the_limit_and_the_wait() -> None:
    async with client_for(keyed({"calls_per_minute": 3})) as (_, client):
        results = [await client.call_tool("math_add", {"a": 1, "b": i}) for i in range(4)]
    assert [r.is_error for r in results] == [False, False, False, True]
    assert "rate limit: key k allows 3 calls per minute (keys.k.calls_per_minute); retry in" in text_of(results[3])


async def test_scripts_per_minute_for_the_team() -> None:
    async with client_for(keyed({}, {"scripts_per_minute": 1}), mode="legacy") as (_, client):
        first = await client.call_tool("executeToolCode", {"code": "result = 1"})
        second = await client.call_tool("executeToolCode", {"code": "result = 2"})
    assert text_of(first) == "result = 1"
    assert second.is_error and "team t allows 1 scripts per minute (teams.t.scripts_per_minute)" in text_of(second)


async def test_daily_budget_from_tool_prices() -> None:
    config = keyed({"budget_per_day": 0.005}, tools={"math.add": {"price": 0.002}})
    async with client_for(config) as (_, client):
        results = [await client.call_tool("math_add", {"a": 1, "b": 1}) for _ in range(3)]
        free = await client.call_tool("math_echo", {"text": "x"})
    assert [r.is_error for r in results] == [False, False, True]
    assert "budget: key k has spent 0.004 of its daily budget 0.005 (keys.k.budget_per_day); resets at" in text_of(
        results[2]
    )
    assert not free.is_error


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_approval_through_elicitation(action: str) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action=action)  # type: ignore[arg-type]

    config = keyed({}, tools={"math.add": {"approval": "always"}})
    async with client_for(config, mode="legacy", elicitation_callback=on_elicit) as (gw, client):
        out = await client.call_tool("math_add", {"a": 2, "b": 3})
        rows = [r for r in await gw.storage.query_audit() if r.kind == "tool"]
    assert asked == ["Allow the tool call math.add?\n  a = 2\n  b = 3"]
    if action == "accept":
        assert out.structured_content == {"result": 5}
    else:
        assert out.is_error and "needs the user's approval, and the user answered decline" in text_of(out)
    assert rows[-1].approval == (action if action == "accept" else None) or rows[-1].outcome == "ApprovalRefused"


async def test_approval_refused_without_elicitation_support() -> None:
    config = keyed({}, tools={"math.a*": {"approval": "always"}, "math.echo": {"approval": "never"}})
    async with client_for(config, mode="legacy") as (_, client):
        out = await client.call_tool("math_add", {"a": 2, "b": 3})
        echo = await client.call_tool("math_echo", {"text": "x"})
    assert out.is_error and "this client cannot ask (no elicitation)" in text_of(out)
    assert not echo.is_error
