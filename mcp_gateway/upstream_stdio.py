"""An upstream over stdio, read by the gateway itself: one JSON-RPC message per line, each held to its limit.

The SDK's stdio client builds a whole line however long it is (and slowly: 10-12 s for 36 MiB);
here a line past `max_message_bytes` is only counted, and the request it answered gets an error.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator

import anyio
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client._transport import TransportStreams
from mcp.client.stdio import get_default_environment
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.message import SessionMessage

from .config import ServerConfig
from .upstream_messages import KEEP, answered_id, error_answer, not_json_rpc, parse_message, too_large

STOP_S = 2.0
"""Grace for an upstream process to exit once its stdin is closed, and again after SIGTERM."""
log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def stdio_transport(config: ServerConfig) -> AsyncIterator[TransportStreams]:
    """The upstream's process, one JSON-RPC message per line on stdin and stdout, in its own process group.

    On exit: stdin is closed, the process gets `STOP_S` to exit, then its group SIGTERM and SIGKILL.
    """
    assert config.command is not None
    process = await anyio.open_process([config.command, *config.args], env=get_default_environment() | config.env,
                                       cwd=config.cwd, stderr=sys.stderr, start_new_session=True)
    incoming, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, outgoing = anyio.create_memory_object_stream[SessionMessage](0)
    flushed = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_read_lines, process, incoming, config.max_message_bytes)
        tg.start_soon(_write_lines, process, outgoing, incoming, flushed)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                read_stream.close()  # the reader drains stdout from now on, so the upstream never blocks on it
                write_stream.close()
                with anyio.move_on_after(0.5):
                    await flushed.wait()
                await _stop(process)
            tg.cancel_scope.cancel()


class Line:
    """The stdout line being read: its bytes while within the limit; past it, its size, start and end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.size = 0
        self.head = b""
        self.tail = b""

    def feed(self, chunk: bytes) -> list[SessionMessage | Exception]:
        """The messages of the lines this chunk completes."""
        done: list[SessionMessage | Exception] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            start = end + 1
            item = self._take()
            if item is not None:
                done.append(item)
        self._add(chunk[start:])
        return done

    def _add(self, piece: bytes) -> None:
        if not piece:
            return
        if len(self.head) < KEEP:
            self.head += piece[: KEEP - len(self.head)]
        self.tail = (self.tail + piece[-KEEP:])[-KEEP:]
        self.size += len(piece)
        if self.size <= self.limit:
            self.data += piece
        elif self.data:
            self.data = bytearray()  # over: from here on only counted

    def _take(self) -> SessionMessage | Exception | None:
        data, size, head, tail = self.data, self.size, self.head, self.tail
        self.data, self.size, self.head, self.tail = bytearray(), 0, b"", b""
        if size > self.limit:
            reason = too_large(size, self.limit)
        elif not data.strip():
            return None
        else:
            try:
                return SessionMessage(parse_message(data))
            except ValueError as exc:
                reason = not_json_rpc(data, exc)
        log.warning("upstream message refused: %s", reason)
        request_id = answered_id(head, tail)  # the request it answers gets the error; else the stream does
        return ValueError(reason) if request_id is None else SessionMessage(error_answer(request_id, reason))


async def _read_lines(process: Process, incoming: MemoryObjectSendStream[SessionMessage | Exception],
                      limit: int) -> None:
    """Deliver each stdout line as a message; once the session is gone, go on reading them into nothing."""
    assert process.stdout is not None
    line = Line(limit)
    async with incoming:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async for chunk in process.stdout:
                for item in line.feed(chunk):
                    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                        await incoming.send(item)


async def _write_lines(process: Process, outgoing: MemoryObjectReceiveStream[SessionMessage],
                       incoming: MemoryObjectSendStream[SessionMessage | Exception], flushed: anyio.Event) -> None:
    assert process.stdin is not None
    try:
        async with outgoing:
            async for message in outgoing:
                text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await process.stdin.send(text.encode() + b"\n")
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        incoming.close()  # the upstream is gone: the session must see its stream end, not wait for an answer
    finally:
        flushed.set()


async def _stop(process: Process) -> None:
    """Close stdin and let the upstream exit; then stop its whole process group."""
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdin.aclose()  # type: ignore[union-attr]
    if not await _exited(process, STOP_S):
        await terminate_posix_process_tree(process, STOP_S)
        if not await _exited(process, STOP_S):
            log.warning("upstream process %d is still alive after SIGKILL; abandoning it", process.pid)
            return
    await process.aclose()


async def _exited(process: Process, within_s: float) -> bool:
    """Whether the process exits within `within_s` (polled: `wait` would also wait for pipes a child may hold)."""
    with anyio.move_on_after(within_s):
        while process.returncode is None:
            await anyio.sleep(0.01)
    return process.returncode is not None
