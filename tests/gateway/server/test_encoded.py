"""Big structured content reaches HTTP clients as the gateway's own JSON text, swapped for a stand-in.

End to end over both protocols (a 2026-07-28 client gets one JSON body, a 2025-11-25 client an SSE
event), then the pieces: which results get a stand-in, and the swap in the response bytes.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from starlette.types import Message, Receive, Scope, Send

from mcp_gateway.results import wire_form
from mcp_gateway.server import encoded
from mcp_gateway.server.encoded import SCOPE_KEY, SWAP_FROM, Encoded, swap, wire_form_for
from tests.helpers import key_client, shared_gateway, stdio

pytestmark = pytest.mark.anyio

served = shared_gateway({"ds": stdio("hostile_server", mode="direct")})


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class _Request:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope


def _result(count: int, **extra: Any) -> types.CallToolResult:
    content = {"items": [{"i": n, "s": "x", "é": "\ud800"} for n in range(count)], **extra}
    return types.CallToolResult(content=[types.TextContent(text="t")], structured_content=content)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_of_either_protocol_gets_the_whole_content(served: str, mode: str) -> None:
    waiting = len(encoded._texts)
    async with key_client(served, mode=mode) as client:
        out = await client.call_tool("ds_objects", {"mb": 0.3, "shape": "both"})  # in one 1 MiB SSE event
    items = out.structured_content["items"] if out.structured_content else []
    assert len(items) == 14979 and items[-1] == {"i": 14978, "s": "x"}
    assert json.loads(out.content[0].text) == out.structured_content  # type: ignore[union-attr]
    assert len(encoded._texts) <= waiting  # sent, so dropped


async def test_only_big_content_on_a_swapping_request_gets_a_stand_in() -> None:
    big, small = _result(SWAP_FROM // 20), _result(2)
    assert await wire_form_for(big, None) == wire_form(big)
    assert await wire_form_for(big, _Request({})) == wire_form(big)
    on = _Request({SCOPE_KEY: True})
    assert await wire_form_for(small, on) == wire_form(small)
    nan = _result(SWAP_FROM // 20, x=float("nan"))
    assert await wire_form_for(nan, on) == wire_form(nan)  # not JSON as it is: the SDK's own way
    sent = await wire_form_for(big, on)
    stand_in = sent.pop("structuredContent")
    assert sent == {k: v for k, v in wire_form(big).items() if k != "structuredContent"}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {**sent, "structuredContent": stand_in}},
                      separators=(",", ":")).encode()
    assert json.loads(swap(body))["result"]["structuredContent"] == big.structured_content
    assert swap(body) == body  # a text goes out once


def test_unknown_and_malformed_stand_ins_stay_as_they_are() -> None:
    token = encoded._texts.put(b"[1]").encode()
    body = (b'{"x":{"io.mcp-gateway/encoded":"' + b"b" * 32 + b'"},"y":{"io.mcp-gateway/encoded":"' + token[:31]
            + b'"},"z":{"io.mcp-gateway/encoded":"' + token + b'"}}')
    assert json.loads(swap(body)) == {"x": {"io.mcp-gateway/encoded": "b" * 32},
                                      "y": {"io.mcp-gateway/encoded": token[:31].decode()}, "z": [1]}


async def _through(start_headers: list[tuple[bytes, bytes]], bodies: list[bytes]) -> list[Message]:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope[SCOPE_KEY] is True
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        for body in bodies:
            await send({"type": "http.response.body", "body": body, "more_body": body is not bodies[-1]})

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await Encoded(app)({"type": "http"}, receive, send)
    return sent


async def test_the_length_of_a_swapped_body_is_set_and_streams_are_not_held() -> None:
    token = encoded._texts.put(b'{"big":true}').encode()
    body = b'{"r":{"io.mcp-gateway/encoded":"' + token + b'"}}'
    start, out = await _through([(b"content-length", str(len(body)).encode())], [body])
    assert json.loads(out["body"]) == {"r": {"big": True}}
    assert dict(start["headers"])[b"content-length"] == str(len(out["body"])).encode()
    token = encoded._texts.put(b"[2]").encode()
    event = b'data: {"r":{"io.mcp-gateway/encoded":"' + token + b'"}}\n\n'
    start, first, second = await _through([(b"content-type", b"text/event-stream")], [b": ping\n\n", event])
    assert start["type"] == "http.response.start" and first["body"] == b": ping\n\n"
    assert second["body"] == b'data: {"r":[2]}\n\n'


async def test_texts_whose_responses_never_went_out_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoded._texts, "keep_s", 0.0)
    old = encoded._texts.put(b"[]")
    await wire_form_for(_result(SWAP_FROM // 20), _Request({SCOPE_KEY: True}))
    assert len(encoded._texts) == 1 and encoded._texts.take(old) is None
