"""Forwarding with several upstreams: names, routing, the allowlist, and relays to the right caller."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError

from mcp_gateway import Gateway, build_server
from tests.helpers import http_fixture, key_client, make_config, serve_gateway, shared_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

ADMIN, BOB = "admin-key-0123456789", "bob-key-0123456789ab"


def tagged(tag: str, *extra: str, **options: Any) -> dict[str, Any]:
    return stdio("conformance_server", "stdio", "--tag", tag, *extra, **options)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# `a` (direct mode) then `b` (code mode): the same fixture twice, told apart by `--tag`.
two_upstreams = shared_gateway(
    {"a": tagged("a", mode="direct"), "b": tagged("b", mode="code")},
    groups={"everything": {"tools": ["*"]}, "only_b": {"tools": ["b.*"]}},
    keys={"admin": {"key": ADMIN, "groups": ["everything"]}, "bob": {"key": BOB, "groups": ["only_b"]}},
)


def prompt_text(result: types.GetPromptResult) -> str:
    content = result.messages[0].content
    assert isinstance(content, types.TextContent)
    return content.text


def resource_text(result: types.ReadResourceResult) -> str:
    contents = result.contents[0]
    assert isinstance(contents, types.TextResourceContents)
    return contents.text


async def test_prompts_of_each_upstream_keep_their_server_prefix(two_upstreams: str) -> None:
    async with key_client(two_upstreams, ADMIN, mode="legacy") as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        assert {"a_test_simple_prompt", "b_test_simple_prompt", "b_test_prompt_with_arguments"} <= names
        assert "test_simple_prompt" not in names
        assert prompt_text(await client.get_prompt("b_test_simple_prompt")).endswith("[b]")
        assert prompt_text(await client.get_prompt("a_test_simple_prompt")).endswith("[a]")
        ref = types.PromptReference(type="ref/prompt", name="b_test_prompt_with_arguments")
        completion = await client.complete(ref, {"name": "arg1", "value": "par"})
        assert completion.completion.values == ["paris", "park", "party"]


async def test_resources_pass_through_and_reads_go_to_the_server_that_listed_them(two_upstreams: str) -> None:
    async with key_client(two_upstreams, ADMIN, mode="legacy") as client:
        uris = [r.uri for r in (await client.list_resources()).resources]
        assert uris.count("test://static-text") == 1, "a URI both list is listed once"
        assert {"test://a/only", "test://b/only"} <= set(uris)
        assert resource_text(await client.read_resource("test://b/only")) == "only [b]"
        assert resource_text(await client.read_resource("test://static-text")).endswith("[a]"), "first server wins"
        templated = await client.read_resource("test://template/7/data")
        assert '"id":"7"' in resource_text(templated)


async def test_a_caller_sees_the_resources_and_prompts_of_the_servers_it_may_call(two_upstreams: str) -> None:
    async with key_client(two_upstreams, BOB, mode="legacy") as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        assert names and all(n.startswith("b_") for n in names)
        uris = {r.uri for r in (await client.list_resources()).resources}
        assert "test://b/only" in uris and "test://a/only" not in uris
        with pytest.raises(MCPError, match="Resource not found"):
            await client.read_resource("test://a/only")
        with pytest.raises(MCPError, match="Unknown prompt"):
            await client.get_prompt("a_test_simple_prompt")
        assert resource_text(await client.read_resource("test://static-text")).endswith("[b]")
    async with key_client(two_upstreams, ADMIN, mode="legacy") as client:  # what bob listed changes nothing for others
        assert resource_text(await client.read_resource("test://static-text")).endswith("[a]")
        assert prompt_text(await client.get_prompt("a_test_simple_prompt")).endswith("[a]")


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_log_messages_follow_the_callers_level(two_upstreams: str) -> None:
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with key_client(two_upstreams, ADMIN, mode="legacy", logging_callback=on_log) as client:
        await client.set_logging_level("warning")
        await client.call_tool("a_test_tool_with_logging", {})
        assert received == []
        await client.set_logging_level("info")
        await client.call_tool("a_test_tool_with_logging", {})
        await anyio.sleep(0.1)
        assert [m.data for m in received] == ["Tool execution started", "Tool processing data",
                                              "Tool execution completed"]
        assert {m.logger for m in received} == {"a.conformance"}


@pytest.mark.parametrize("upstream", ["stdio", "http-legacy"])
async def test_elicitation_goes_back_to_the_caller_that_made_the_call(upstream: str) -> None:
    """Two callers at once: each answers its own upstream's question (2026-07-28 and handshake-era upstreams)."""
    async with contextlib.AsyncExitStack() as stack:
        if upstream == "stdio":
            server: dict[str, Any] = stdio("conformance_server", "stdio", mode="direct")
        else:
            server = {"url": await stack.enter_async_context(http_fixture("conformance_server", "http", "--legacy")),
                      "mode": "direct"}
        config = make_config({"conformance": server}, gateway={"prefix_direct_tools": False})
        url = await stack.enter_async_context(serve_gateway(Gateway(config)))

        async def caller(name: str, results: dict[str, str]) -> None:
            async def answer(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
                await anyio.sleep(0.2)  # both questions are open at the same time
                return types.ElicitResult(action="accept", content={"username": name, "email": f"{name}@example.com"})

            async with key_client(url, mode="legacy", elicitation_callback=answer) as client:
                results[name] = text_of(await client.call_tool("test_elicitation", {"message": f"hi {name}"}))

        results: dict[str, str] = {}
        async with anyio.create_task_group() as tg:
            for name in ("alice", "carol"):
                tg.start_soon(caller, name, results)
        assert "'username': 'alice'" in results["alice"]
        assert "'username': 'carol'" in results["carol"]


async def test_a_caller_that_cannot_elicit_gets_a_tool_error_not_someone_elses_answer() -> None:
    config = make_config({"conformance": stdio("conformance_server", "stdio", mode="direct")},
                         gateway={"prefix_direct_tools": False})
    async with serve_gateway(Gateway(config)) as url, key_client(url, mode="legacy") as client:
        result = await client.call_tool("test_elicitation", {"message": "hi"})
        assert result.is_error
        assert "asked for elicitation, and the gateway's client does not support it" in text_of(result)


async def test_two_servers_on_one_gateway_both_get_their_upstream_traffic() -> None:
    """`build_server(gw)` then `build_app(gw)`: the upstream's questions reach the clients of both.

    (A handshake-era upstream over stdio: its requests arrive outside the call, so they are routed by
    the calls in flight, which must include the calls of every server built on the gateway.)
    """
    config = make_config({"conformance": stdio("conformance_server", "stdio", "--legacy", mode="direct")},
                         gateway={"prefix_direct_tools": False})
    gw = Gateway(config)
    first = build_server(gw)

    async def answer(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"username": "ann", "email": "ann@example.com"})

    async with Client(first, mode="legacy", elicitation_callback=answer) as in_process, serve_gateway(gw) as url:
        async with key_client(url, mode="legacy", elicitation_callback=answer) as over_http:
            via_http = text_of(await over_http.call_tool("test_elicitation", {"message": "hi"}))
        via_first = text_of(await in_process.call_tool("test_elicitation", {"message": "hi"}))
    assert "'username': 'ann'" in via_http
    assert "'username': 'ann'" in via_first, via_first
