"""A client that cancels a running script stops it, and the script's upstream call with it."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from mcp import Client

from mcp_gateway import Gateway
from tests.helpers import eventually, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_cancelling_a_script_cancels_its_upstream_call_and_frees_the_worker(mode: str) -> None:
    gw = Gateway(make_config({"math": stdio("math_server")}, limits={"workers": 1}))
    async with serve_gateway(gw) as url, Client(url, mode=mode) as client:  # type: ignore[arg-type]
        started = time.monotonic()
        with anyio.move_on_after(1.0):
            await client.call_tool("executeToolCode", {"code": "result = math.slow(seconds=30)"})

        async def slow_rows() -> list[str]:
            return [r.outcome for r in await gw.storage.query_audit(tool="slow")]

        async def settled() -> bool:
            return await slow_rows() not in ([], ["started"])

        await eventually(settled, 10)
        assert await slow_rows() == ["cancelled"]
        assert time.monotonic() - started < 10  # not the 30 s the tool would have slept
        with anyio.fail_after(5):  # the only worker is free again
            out = await client.call_tool("executeToolCode", {"code": "result = math.add(a=1, b=1)"})
        assert text_of(out) == "result = 2"


async def test_a_client_that_drops_its_connection_cancels_its_script() -> None:
    """Handshake era: the answer would come on the POST's event stream; closing it cancels the call."""
    client = {"name": "t", "version": "1"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "executeToolCode", "arguments": {"code": "result = math.slow(seconds=20)"}}}
    gw = Gateway(make_config({"math": stdio("math_server")}))
    async with serve_gateway(gw) as url, httpx.AsyncClient(timeout=30) as http:
        opened = await http.post(url, json=init, headers=accept)
        headers = {**accept, "Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        with anyio.move_on_after(1):
            async with http.stream("POST", url, json=call, headers=headers) as response:
                async for _ in response.aiter_bytes():
                    pass
        dropped = time.monotonic()
        async def cancelled() -> bool:
            return [r.outcome for r in await gw.storage.query_audit(tool="slow")] == ["cancelled"]

        await eventually(cancelled, 10)
    assert time.monotonic() - dropped < 5
    assert [r.outcome for r in await gw.storage.query_audit(tool="executeToolCode")] == ["cancelled"]
