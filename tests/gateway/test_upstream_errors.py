"""What a user reads when an upstream cannot be reached: the server, its URL or command, what happened, what to try."""

from __future__ import annotations

import httpx2
import pytest

from mcp_gateway import Gateway, call
from mcp_gateway.errors import describe_exception
from mcp_gateway.upstream_messages import QUOTED
from mcp_gateway.upstream_stdio import Line
from tests.helpers import free_port, http_fixture, key_client, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

SLOW_RETRY = {"reconnect_initial_s": 30, "reconnect_max_s": 60, "connect_timeout_s": 5, "startup_timeout_s": 8}
ADMIN = "admin-key-0123456789"


def test_a_cause_that_repeats_the_text_is_said_once() -> None:
    try:
        try:
            try:
                raise OSError("All connection attempts failed")
            except OSError as inner:
                raise httpx2.ConnectError("All connection attempts failed") from inner
        except httpx2.ConnectError as middle:
            raise RuntimeError("All connection attempts failed") from middle
    except RuntimeError as exc:
        assert describe_exception(exc) == "All connection attempts failed"
    try:
        raise RuntimeError("tools/list failed") from ValueError("bad cursor")
    except RuntimeError as exc:
        assert describe_exception(exc) == "tools/list failed (bad cursor)"


async def test_each_common_failure_names_its_url_or_command_and_what_to_try() -> None:
    refused = f"http://127.0.0.1:{free_port()}/mcp"
    async with (
        http_fixture("math_server") as math_url,
        serve_gateway(Gateway(make_config({}, keys={"admin": {"key": ADMIN, "admin": True}}))) as keyed_url,
    ):
        wrong_path = math_url.removesuffix("/mcp") + "/api"
        servers = {
            "refused": {"url": refused},
            "wrongpath": {"url": wrong_path},
            "locked": {"url": keyed_url},
            "chatty": {"command": "echo", "args": ["Starting server on port 8080"]},
            "missing": {"command": "/nonexistent/bin/server"},
            "math": stdio("math_server"),
        }
        async with Gateway(make_config(servers, gateway=SLOW_RETRY)) as gw:
            status = {up.name: up.status for up in gw.upstreams}
    assert status["refused"] == (f"failed: nothing listens at {refused}: is the server running?; "
                                 "retrying with backoff")
    assert status["wrongpath"].startswith(f"failed: {wrong_path} answered 404: is the path right (often /mcp)?")
    assert status["locked"].startswith(f"failed: {keyed_url} answered 401: it needs credentials: set headers")
    assert status["chatty"].startswith("failed: `echo Starting server on port 8080` wrote something that is "
                                       "not MCP on stdout (")
    assert '; it was "Starting server on port 8080"): a stdio server must write only JSON-RPC there' in status["chatty"]
    assert status["missing"].startswith("failed: command not found: /nonexistent/bin/server: is it installed")
    assert status["math"] == "ok"
    assert not any("All connection attempts failed" in s for s in status.values())


def test_a_line_that_is_not_json_rpc_is_quoted_escaped_and_cut() -> None:
    head = "\x1b[2J\x1b[31mListening\x1b[0m on :8080 \u202e"  # ANSI escapes, a right-to-left override
    first, second = Line(limit=10_000).feed(head.encode() + b"." * 1000 + b"\r\n{\"a\": 1}\n")
    assert isinstance(first, ValueError) and isinstance(second, ValueError)
    start = 'its answer is not a JSON-RPC message: Expecting value: line 1 column 1 (char 0); it began "'
    shown = r"\u{001B}[2J\u{001B}[31mListening\u{001B}[0m on :8080 \u{202E}" + "." * (QUOTED - len(head))
    assert str(first) == start + shown + '…"'
    assert str(second).endswith('; it was "{"a": 1}"'), str(second)


async def test_a_script_calling_a_down_server_hears_it_is_down_and_a_hidden_one_stays_unknown() -> None:
    refused = f"http://127.0.0.1:{free_port()}/mcp"
    cfg = make_config(
        {"inventory": {"url": refused}, "text": stdio("text_server")},
        gateway=SLOW_RETRY,
        groups={"stock": {"tools": ["inventory.*", "text.*"]}, "writers": {"tools": ["text.*"]}},
        keys={"stock": {"key": "stock-key-0123456789", "groups": ["stock"]},
              "writer": {"key": "writer-key-012345678", "groups": ["writers"]}},
    )
    code = {"code": "result = inventory.get_item(id=1)"}
    async with serve_gateway(Gateway(cfg)) as url:
        async with key_client(url, "stock-key-0123456789") as stock:
            seen_by_stock = text_of(await stock.call_tool("executeToolCode", code))
        async with key_client(url, "writer-key-012345678") as writer:
            seen_by_writer = text_of(await writer.call_tool("executeToolCode", code))
    assert (f"inventory is unavailable (nothing listens at {refused}: is the server running?; retrying with "
            "backoff): its tools come back when it reconnects") in seen_by_stock
    assert "unknown tool" not in seen_by_stock
    assert "undefined: inventory (not a server" in seen_by_writer  # as for a server that does not exist
    assert "unavailable" not in seen_by_writer and refused not in seen_by_writer, seen_by_writer


async def test_a_direct_mode_call_to_a_down_server_says_it_is_down() -> None:
    refused = f"http://127.0.0.1:{free_port()}/mcp"
    cfg = make_config({"inventory": {"url": refused, "mode": "direct"}, "text": stdio("text_server")},
                      gateway=SLOW_RETRY)
    async with Gateway(cfg) as gw:
        down = await call(gw, "inventory_get_item", {"id": 1})
        unknown = await call(gw, "nothing_here", {})
    assert down.is_error
    assert text_of(down).startswith("inventory is unavailable (nothing listens at ")
    assert text_of(down).endswith("its tools come back when it reconnects")
    assert unknown.is_error and text_of(unknown).startswith("unknown tool nothing_here")


async def test_direct_mode_results_drop_the_upstream_connection_s_protocol_meta() -> None:
    cfg = make_config({"math": stdio("math_server", mode="direct")}, gateway={"prefix_direct_tools": False})
    async with Gateway(cfg) as gw:
        raw = await gw.upstream("math").call_tool("add", {"a": 1, "b": 2}, 10)
        out = await call(gw, "add", {"a": 1, "b": 2})
    assert raw.meta and "io.modelcontextprotocol/serverInfo" in raw.meta  # what the upstream's session stamps
    assert not out.is_error and not any(k.startswith("io.modelcontextprotocol/") for k in out.meta or {})
