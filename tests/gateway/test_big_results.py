"""Tool results too big for the gateway: refused before they are parsed, with a clear error and little memory.

The gateway runs as its own process (`mcp-gateway serve`), so its memory is its own: before each
call its peak (VmHWM) is reset, and the call may raise it by at most GROWTH_BOUND_MIB. Upstreams
are `tests/fixtures/hostile_server.py` over stdio (`s`, and `ds` in direct mode) and streamable
HTTP (`h`, `dh`). `objects(mb=16)` answers 16 MiB of `{"i": n, "s": "x"}` objects both as
`structuredContent` and as text, one 36.4 MiB message: before messages were bounded it took the
gateway from about 120 MiB to 1.4 GiB, and the script ran its worker out of memory.
"""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.message import SessionMessage

from mcp_gateway.results import text_result, wire_form
from mcp_gateway.upstream_http import Bodies
from mcp_gateway.upstream_messages import HOLD_FROM, STAND_IN, answered_id, parse_message, restore
from mcp_gateway.upstream_stdio import Line
from tests.helpers import FIXTURES, free_port, http_fixture, text_of

pytestmark = pytest.mark.anyio

GROWTH_BOUND_MIB = 100
TOOL_RESULT_LIMIT = "limits.max_tool_result_bytes (4 MiB)"
CAP = "max_message_bytes = 16777216\n"  # the scenario of the report: a 16 MiB cap (the default is 4 MiB)
REFUSED = "its answer is 36.4 MiB, more than the server's max_message_bytes (16 MiB); ask the tool for less"


def _objects(mb: float) -> int:
    """How many objects `objects(mb=...)` returns."""
    return int(mb * 1024 * 1024) // len('{"i":100000,"s":"x"},')


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Gw:
    client: Client
    pid: int

    def status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    async def growth(self, call: Callable[[], Any]) -> tuple[Any, float]:
        """`await call()`, and how far it raised the gateway's peak memory above where it was."""
        with contextlib.suppress(OSError):  # without clear_refs the peak is start-up's, about the baseline
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        baseline = self.status_mib("VmRSS")
        out = await call()
        return out, self.status_mib("VmHWM") - baseline


@pytest.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gw]:
    tmp = tmp_path_factory.mktemp("big-results")
    port = free_port()
    hostile = FIXTURES / "hostile_server.py"
    async with http_fixture("hostile_server") as url:
        config = tmp / "gw.toml"
        config.write_text(
            f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp / "state"}"\n'
            "[limits]\nmax_tool_result_bytes = 4194304\n"
            f'[servers.s]\ncommand = "{sys.executable}"\nargs = ["{hostile}"]\n{CAP}'
            f'[servers.ds]\ncommand = "{sys.executable}"\nargs = ["{hostile}"]\nmode = "direct"\n{CAP}'
            f'[servers.h]\nurl = "{url}"\n{CAP}'
            f'[servers.dh]\nurl = "{url}"\nmode = "direct"\n{CAP}'
        )
        proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await _healthy(f"http://127.0.0.1:{port}/healthz")
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                await _execute(client, "result = [s.ping(), h.ping()]")  # warm: upstreams and a worker are up
                yield Gw(client, proc.pid)
        finally:
            proc.kill()
            proc.wait(timeout=10)


async def _healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx2.AsyncClient() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.TransportError):
                if (await http.get(url)).status_code == 200:
                    return
            await anyio.sleep(0.1)
    raise TimeoutError("gateway did not start")


async def _execute(client: Client, code: str) -> types.CallToolResult:
    return await client.call_tool("executeToolCode", {"code": code})


async def _still_serves(gw: Gw) -> None:
    out = await _execute(gw.client, "result = [s.ping(), h.ping()]")
    assert text_of(out) == 'result = ["pong", "pong"]', text_of(out)
    assert text_of(await gw.client.call_tool("ds_ping", {})) == "pong"


@pytest.mark.parametrize("server", ["s", "h"])
async def test_a_script_gets_a_clear_error(gw: Gw, server: str) -> None:
    out, growth = await gw.growth(lambda: _execute(gw.client, f"x = {server}.objects(mb=16)\n"))
    assert out.is_error
    assert "ToolError at line 1" in text_of(out) and f"{server}.objects failed: {REFUSED}" in text_of(out)
    assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"
    await _still_serves(gw)


@pytest.mark.parametrize("server", ["ds", "dh"])
async def test_a_result_of_too_many_objects_is_refused_before_it_is_parsed(gw: Gw, server: str) -> None:
    # 3.5 MiB of `{}`: 1.2 million objects, about 80 MiB once parsed (56-64 bytes each)
    out, growth = await gw.growth(lambda: gw.client.call_tool(f"{server}_empty_objects", {"mb": 3.5}))
    assert out.is_error and "objects and arrays, more than the gateway parses (500,000)" in text_of(out), text_of(out)
    assert growth < 40, f"the gateway grew by {growth:.0f} MiB"
    await _still_serves(gw)


@pytest.mark.parametrize("server", ["ds", "dh"])
async def test_a_direct_call_gets_a_clear_tool_error(gw: Gw, server: str) -> None:
    out, growth = await gw.growth(lambda: gw.client.call_tool(f"{server}_objects", {"mb": 16}))
    assert out.is_error
    assert text_of(out).startswith(f"{server}.objects failed: {REFUSED}"), text_of(out)
    assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"
    await _still_serves(gw)


async def test_try_call_sees_a_failed_call(gw: Gw) -> None:
    code = 'r = try_call("h.objects", mb=16)\nresult = [r["ok"], "max_message_bytes (16 MiB)" in r["error"]]\n'
    out, growth = await gw.growth(lambda: _execute(gw.client, code))
    assert text_of(out) == "result = [false, true]", text_of(out)
    assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"


async def test_text_over_max_tool_result_bytes_is_refused_before_it_is_parsed(gw: Gw) -> None:
    # 4.9 MiB of JSON text (6.3 MiB as a message, quotes escaped): within max_message_bytes, over 4 MiB
    out, growth = await gw.growth(lambda: _execute(gw.client, 'x = s.objects(mb=5, shape="text")\n'))
    assert out.is_error
    assert f"s.objects returned 4.9 MiB of text, more than {TOOL_RESULT_LIMIT}; ask the tool for less" in text_of(out)
    assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"


async def test_results_within_the_limits_still_arrive(gw: Gw) -> None:
    code = (
        'a = s.objects(mb=1, shape="structured")\nb = h.objects(mb=1)\n'
        'c = parallel([("h.objects", {"mb": 1, "shape": "structured"})] * 3)\n'
        'result = [len(a["items"]), len(b["items"])] + [len(x["items"]) for x in c] + [c[2]["items"][7]]\n'
    )
    out, growth = await gw.growth(lambda: _execute(gw.client, code))
    count = _objects(1)
    assert text_of(out) == f'result = {json.dumps([count] * 5 + [{"i": 7, "s": "x"}])}', text_of(out)[:500]
    direct = await gw.client.call_tool("dh_objects", {"mb": 0.5, "shape": "structured"})
    assert not direct.is_error and direct.structured_content is not None
    assert len(direct.structured_content["items"]) == _objects(0.5)
    assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"


# -- the pieces: a stdio line, an HTTP body, a result for the client -----------------------------


def _answer(request_id: int, size: int) -> bytes:
    """A JSON-RPC response of about `size` bytes."""
    result = {"content": [{"type": "text", "text": "x" * size}]}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, separators=(",", ":")).encode()


def test_a_line_over_the_limit_answers_its_request_and_the_next_line_is_read() -> None:
    line = Line(limit=1000)
    data = _answer(7, 3000) + b"\n" + _answer(8, 10) + b"\n"
    items = [item for start in range(0, len(data), 512) for item in line.feed(data[start:start + 512])]
    assert len(items) == 2
    refused, ok = items
    assert isinstance(refused, SessionMessage) and isinstance(refused.message, types.JSONRPCError)
    assert refused.message.id == 7
    assert refused.message.error.message.startswith(f"its answer is {len(_answer(7, 3000))} bytes, more than the "
                                                    "server's max_message_bytes (1000 bytes)")
    assert isinstance(ok, SessionMessage) and isinstance(ok.message, types.JSONRPCResponse) and ok.message.id == 8


def test_a_line_that_answers_nothing_is_an_error_of_the_stream() -> None:
    notification = b'{"jsonrpc":"2.0","method":"x","params":{"a":"' + b"y" * 2000 + b'"}}'
    items = Line(limit=1000).feed(b"not json\n\n" + notification + b"\n")
    assert [type(item) for item in items] == [ValueError, ValueError]


@pytest.mark.parametrize(("text", "expected"), [
    (b'{"jsonrpc":"2.0","id":12,"result":{"content":[]}}', 12),
    (b'{"jsonrpc": "2.0", "id": "a\\"b", "error": {"code": 1}}', 'a"b'),
    (b'{"id":3,"jsonrpc":"2.0","result":{}}', 3),
    (b'{"result":{"content":[{"id":5}]},"jsonrpc":"2.0","id":4}', 4),
    (b'{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}}', None),
    (b'{"result":{"x":{"id":5}}}', None),
])
def test_the_request_an_answer_is_for(text: bytes, expected: object) -> None:
    assert answered_id(text[:40], text[-40:]) == expected


def test_parsing_accepts_only_json() -> None:
    assert isinstance(parse_message(b'{"jsonrpc":"2.0","id":1,"result":{"x":1.5}}'), types.JSONRPCResponse)
    for text in (b'{"jsonrpc":"2.0","id":1,"result":{"x":NaN}}', b"[" * 100_000 + b"]" * 100_000, b'{"a":1}'):
        with pytest.raises(ValueError):
            parse_message(text)


class _Chunks(httpx2.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), 4096):
            self.read += 4096
            yield self.data[start:start + 4096]


def _response(body: bytes, *, declare_length: bool) -> tuple[httpx2.Response, _Chunks]:
    request = httpx2.Request("POST", "http://upstream/mcp", json={"jsonrpc": "2.0", "id": 9, "method": "tools/call"})
    headers = {"content-type": "application/json"} | ({"content-length": str(len(body))} if declare_length else {})
    stream = _Chunks(body)
    return httpx2.Response(200, headers=headers, stream=stream, request=request), stream


@pytest.mark.parametrize("declare_length", [True, False])
async def test_an_http_body_over_the_limit_becomes_an_error_for_its_request(declare_length: bool) -> None:
    bodies = Bodies(100_000)
    response, stream = _response(_answer(9, 1_000_000), declare_length=declare_length)
    await bodies.bound(response)
    message = parse_message(await response.aread())
    assert isinstance(message, types.JSONRPCError) and message.id == 9
    size = f"{len(_answer(9, 1_000_000))} bytes, more than" if declare_length else "over"
    assert message.error.message.startswith(f"its answer is {size} the server's max_message_bytes (100000 bytes)")
    assert stream.read <= (0 if declare_length else 100_000 + 4096)


async def test_a_large_http_body_is_parsed_once_and_put_back_for_the_session() -> None:
    bodies = Bodies(1_000_000)
    original = _answer(9, 200_000)
    response, _ = _response(original, declare_length=True)
    await bodies.bound(response)
    stand_in = await response.aread()
    assert len(stand_in) < 200
    delivered = SessionMessage(types.jsonrpc_message_adapter.validate_json(stand_in))
    restored = bodies.restore(delivered)
    assert isinstance(restored, SessionMessage) and restored.message == parse_message(original)
    again = bodies.restore(delivered)
    assert isinstance(again, SessionMessage) and isinstance(again.message, types.JSONRPCError)
    assert again.message.error.message.startswith("its answer was dropped")


def test_a_result_goes_to_the_sdk_as_its_dump_with_the_structured_content_not_copied() -> None:
    # the SDK's server validates, dumps and encodes a result dict once more: a model's own dump would be one
    # more copy of every value (and 30-40 ms of the event loop per 100,000 small objects)
    structured: dict[str, Any] = {"items": [{"i": n, "s": "x", "none": None} for n in range(3)], "n": 1.5}
    result = types.CallToolResult(content=[types.TextContent(text="t")], structured_content=structured,
                                  _meta={"k": [1]})
    wire = wire_form(result)
    assert wire == result.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert wire["structuredContent"] is structured
    assert wire_form(text_result("no", is_error=True)) == {"content": [{"type": "text", "text": "no"}],
                                                           "isError": True, "resultType": "complete"}


def _big_result(request_id: int, count: int) -> bytes:
    result = {"content": [], "structuredContent": {"items": [{"i": n, "s": "x"} for n in range(count)]}}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, separators=(",", ":")).encode()


def _call_result(message: types.JSONRPCMessage) -> types.CallToolResult:
    assert isinstance(message, types.JSONRPCResponse)
    return types.CallToolResult.model_validate(message.result)


def test_big_structured_content_is_held_aside_while_the_sdk_handles_the_message() -> None:
    # the SDK's client checks a result against the protocol's schema by validating and dumping it: for 3.5 MB of
    # small objects a 35 MiB copy and 40 ms of the event loop; it gets a stand-in, the content comes back after
    count = HOLD_FROM // 10
    big, small = parse_message(_big_result(1, count)), parse_message(_big_result(2, 3))
    held = _call_result(big)
    assert held.structured_content is not None and list(held.structured_content) == [STAND_IN]
    types.CallToolResult.model_validate(held.model_dump(by_alias=True, mode="json"))  # the SDK's check passes
    assert restore(held).structured_content == {"items": [{"i": n, "s": "x"} for n in range(count)]}
    assert _call_result(small).structured_content == {"items": [{"i": n, "s": "x"} for n in range(3)]}


def test_a_stand_in_cannot_be_forged_and_an_answer_nobody_takes_is_freed() -> None:
    forged = types.CallToolResult(content=[], structured_content={STAND_IN: "anything"})
    assert restore(forged).structured_content == {STAND_IN: "anything"}  # the upstream's own content, as it is
    message = parse_message(_big_result(9, HOLD_FROM // 10))  # an answer to a call that gave up: dropped...
    assert isinstance(message, types.JSONRPCResponse)
    content = message.result["structuredContent"][STAND_IN].content
    del message
    gc.collect()
    assert sys.getrefcount(content) == 2  # ...and its content with it: only this test's name holds it now


async def test_a_fresh_gateways_first_big_result_stays_within_the_bound(tmp_path: Path) -> None:
    """The first big call grows a fresh heap the most (later calls reuse its free memory): 113 MiB when the
    token encoding was still loaded at the first listing, 70-75 MiB while the SDK client's protocol check still
    copied the content, 43-46 MiB now."""
    port = free_port()
    config = tmp_path / "gw.toml"
    hostile = FIXTURES / "hostile_server.py"
    config.write_text(f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp_path / "state"}"\n'
                      "[limits]\nmax_tool_result_bytes = 4194304\n"
                      f'[servers.ds]\ncommand = "{sys.executable}"\nargs = ["{hostile}"]\nmode = "direct"\n')
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _healthy(f"http://127.0.0.1:{port}/healthz")
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            await client.list_tools()
            assert text_of(await client.call_tool("ds_ping", {})) == "pong"
            gw = Gw(client, proc.pid)
            out, growth = await gw.growth(lambda: client.call_tool("ds_objects", {"mb": 3.5, "shape": "structured"}))
        assert out.structured_content is not None and len(out.structured_content["items"]) == _objects(3.5)
        assert growth < GROWTH_BOUND_MIB, f"the gateway grew by {growth:.0f} MiB"
    finally:
        proc.kill()
        proc.wait(timeout=10)
