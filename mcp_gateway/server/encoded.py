"""Big structured content goes to HTTP clients as JSON text the gateway encodes in steps, not through the SDK.

The SDK's server validates a returned result, dumps it and encodes it, each a walk over every value
and all in one go: for 3.5 MB of small objects about 150 ms of the event loop on a 2026-07-28
connection (65 ms on a 2025-11-25 one), while every other caller waits. So a tool result's
`structuredContent` of `SWAP_FROM` bytes or more is encoded here, in steps that let the loop run
(`sandbox.values.json_steps`), and the SDK gets a stand-in, `{"io.mcp-gateway/encoded": <token>}`,
which `Encoded` (around the `/mcp` app) swaps for the text in the response bytes. The client gets
the same JSON value; only its spelling may differ (non-ASCII characters escaped, say).

Content that is not JSON as it is (a NaN, say) goes through the SDK as before. A token is random
and used once; a text whose response never went out (the client left) is dropped after `KEEP_S`.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import finish, json_steps

from ..held import TOKEN_BYTES, Held
from ..results import wire_form

log = structlog.get_logger("mcp_gateway.encoded")

SWAP_FROM = 64 * 1024
"""Characters of structured content's JSON text from which it is swapped in (smaller ones the SDK encodes)."""
KEEP_S = 30.0
"""How long an encoded text waits for its response."""
STAND_IN = "io.mcp-gateway/encoded"
SCOPE_KEY = "mcp_gateway.encoded"
"""Set in the scope of each request whose responses `Encoded` swaps stand-ins in."""
_MARK = b'{"' + STAND_IN.encode() + b'":"'
_END = b'"}'
_texts: Held[bytes] = Held(KEEP_S, dropped=lambda text: log.info(
    "an encoded result was never sent (its client went away)", bytes=len(text)))
"""The JSON texts waiting for their responses."""


async def wire_form_for(result: types.CallToolResult, request: Any) -> dict[str, Any]:
    """`wire_form(result)`; its structured content a stand-in when its text is `SWAP_FROM` or more and the
    response goes out through `Encoded` (the HTTP `request` of the call passed it)."""
    dumped = wire_form(result)
    scope = getattr(request, "scope", None)
    if result.structured_content is None or not isinstance(scope, dict) or not scope.get(SCOPE_KEY):
        return dumped
    try:
        text = await finish(json_steps(result.structured_content))
    except (TypeError, ValueError, RecursionError):
        return dumped  # not JSON as it is: the SDK makes what it makes of it
    if len(text) < SWAP_FROM:
        return dumped
    dumped["structuredContent"] = {STAND_IN: _texts.put(text.encode("ascii"))}
    return dumped


class Encoded:
    """ASGI middleware: the stand-ins in response bodies become their texts (and `Content-Length` follows)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = True
        held: list[Message] = []

        async def swapping(message: Message) -> None:
            if message["type"] == "http.response.start" and any(k == b"content-length" for k, _ in message["headers"]):
                held.append(message)  # until the body: its length may change
                return
            if message["type"] == "http.response.body" and _MARK in message.get("body", b""):
                body = message["body"]
                swapped = swap(body)
                if held:
                    held[0] = _with_length(held[0], len(swapped) - len(body))
                message = {**message, "body": swapped}
            while held:
                await send(held.pop())
            await send(message)

        await self.app(scope, receive, swapping)
        while held:
            await send(held.pop())


def swap(body: bytes) -> bytes:
    """`body` with each stand-in whose token is known replaced by its text (each text is sent once)."""
    parts: list[bytes] = []
    done = 0
    while (start := body.find(_MARK, done)) >= 0:
        token_at = start + len(_MARK)
        end = token_at + 2 * TOKEN_BYTES
        kept = _texts.take(body[token_at:end].decode("latin-1")) if body[end:end + 2] == _END else None
        if kept is None:
            parts.append(body[done:token_at])
            done = token_at
            continue
        parts += [body[done:start], kept]
        done = end + len(_END)
    parts.append(body[done:])
    return b"".join(parts)


def _with_length(start: Message, change: int) -> Message:
    headers = [(k, str(int(v) + change).encode() if k == b"content-length" else v) for k, v in start["headers"]]
    return {**start, "headers": headers}
