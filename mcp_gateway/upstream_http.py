"""Streamable HTTP bodies from an upstream, held to `max_message_bytes`, and the large ones parsed by the gateway.

An httpx response hook reads each JSON body before the SDK does (up to the limit, or refused at
once from `Content-Length`); a large one is parsed here and the SDK gets a tiny stand-in result,
swapped back for the real message before the session sees it. (SSE events are held to 1 MiB by
the SDK itself.)
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import AsyncIterator

import anyio
import httpx2
import mcp_types as types
from mcp.client import Transport
from mcp.client._transport import TransportStreams
from mcp.shared._context_streams import ContextReceiveStream
from mcp.shared.message import SessionMessage

from .held import Held
from .upstream_messages import error_answer, not_json_rpc, parse_message, too_large

PARSE_HERE_FROM = 64 * 1024
"""Bodies from this size on are parsed by the gateway, smaller ones by the SDK."""
_KEPT, _MAX_KEPT, _KEPT_S = "io.mcp-gateway/kept", 32, 60.0


class Bodies:
    """The JSON response bodies of one streamable HTTP connection, bounded, and the large ones parsed here.

    `bound`, an httpx response hook, reads a JSON body (up to the limit) before the SDK does: one
    over the limit becomes an error for the request it answers; one from `PARSE_HERE_FROM` on is
    parsed here and kept, and the SDK gets a stand-in result, which `restore` swaps back.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: Held[types.JSONRPCMessage] = Held(_KEPT_S, _MAX_KEPT)  # answers to requests given up on go

    async def bound(self, response: httpx2.Response) -> None:
        if not response.headers.get("content-type", "").lower().startswith("application/json"):
            return
        request_id = _request_id(response.request)
        read = await _read_within(response, self.limit)
        if isinstance(read, str):
            body = error_answer(request_id, read).model_dump_json(by_alias=True).encode()
        elif len(read) >= PARSE_HERE_FROM and response.is_success:
            body = self._keep(read, request_id)
        else:
            body = bytes(read)
        response.stream = httpx2.ByteStream(body)
        response.headers.pop("content-encoding", None)
        response.headers["content-length"] = str(len(body))

    def _keep(self, data: bytearray, request_id: types.RequestId | None) -> bytes:
        """A stand-in body for a large one: the message parsed and kept here, under a token only it knows."""
        try:
            message = parse_message(data)
        except ValueError as exc:
            return error_answer(request_id, not_json_rpc(data, exc)).model_dump_json(by_alias=True).encode()
        del data[:]
        if not isinstance(message, types.JSONRPCResponse):
            return message.model_dump_json(by_alias=True, exclude_unset=True).encode()
        stand_in = types.JSONRPCResponse(jsonrpc="2.0", id=message.id, result={_KEPT: self.kept.put(message)})
        return stand_in.model_dump_json(by_alias=True).encode()

    def restore(self, item: SessionMessage | Exception) -> SessionMessage | Exception:
        """The kept message in place of its stand-in; other items as they are."""
        if not isinstance(item, SessionMessage) or not isinstance(item.message, types.JSONRPCResponse):
            return item
        token = item.message.result.get(_KEPT)
        if not isinstance(token, str) or len(item.message.result) != 1:
            return item
        message = self.kept.take(token) or error_answer(item.message.id, "its answer was dropped, too late")
        return SessionMessage(message, metadata=item.metadata)


def _request_id(request: httpx2.Request) -> types.RequestId | None:
    """The id of the JSON-RPC request a POST carried (its body is ours, and small)."""
    try:
        sent = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None
    value = sent.get("id") if isinstance(sent, dict) else None
    return value if isinstance(value, int | str) else None


async def _read_within(response: httpx2.Response, limit: int) -> bytearray | str:
    """The decoded body; or, as soon as it is over `limit` bytes (by `Content-Length`, or read), why not."""
    declared = response.headers.get("content-length", "")
    raw = httpx2.Response(response.status_code, headers=response.headers, stream=response.stream)
    body = bytearray()
    try:
        if declared.isdigit() and int(declared) > limit:
            return too_large(int(declared), limit)
        async for chunk in raw.aiter_bytes():
            body += chunk
            if len(body) > limit:
                return too_large(len(body), limit, exact=False)
    finally:
        await raw.aclose()  # the rest of an over-limit body is not read
    return body


@contextlib.asynccontextmanager
async def restored(transport: Transport, bodies: Bodies) -> AsyncIterator[TransportStreams]:
    """The transport with each message read through `bodies.restore`.

    Each message keeps the context it was sent in (the SDK runs an upstream's requests, such as
    elicitation, in the context of the client call that caused them), as the SDK's own streams do.
    """
    async with transport as (read_stream, write_stream):
        sink, raw = anyio.create_memory_object_stream[tuple[contextvars.Context, SessionMessage | Exception]](0)
        restored = ContextReceiveStream(raw)

        async def forward() -> None:
            async with sink:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    async for item in read_stream:
                        sent_in = getattr(read_stream, "last_context", None) or contextvars.copy_context()
                        await sink.send((sent_in, bodies.restore(item)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(forward)
            try:
                yield restored, write_stream
            finally:
                tg.cancel_scope.cancel()
