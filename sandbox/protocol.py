"""Frames between the gateway and a worker: a 4-byte big-endian length, then that many bytes of JSON.

Length-prefixing means any payload (newlines included) passes unchanged, and the reader
knows a frame's size before reading it, so an oversized frame can be refused unread.
The JSON is ASCII-only, so strings with lone surrogates still encode.

A run, worker side first: `ready` (once, at start); then per script the gateway sends
`run`, the worker answers `started`, then any number of `call` (one tool; the gateway
answers `reply`) or `calls` (a `parallel` batch; the gateway runs them concurrently and
answers one `replies`), and finally `done`.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

from .values import encode_json

HEADER = struct.Struct(">I")
MAX_FRAME = 2**32 - 1


class ProtocolError(Exception):
    """A frame that is malformed, too large, or not what the conversation expects."""


def pack(message: dict[str, Any]) -> bytes:
    """One frame holding `message`."""
    body = encode_json(message).encode("ascii")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes is too large")
    return HEADER.pack(len(body)) + body


def pack_encoded(body: str) -> bytes:
    """One frame whose body is already-encoded JSON text (ASCII), e.g. built from encoded parts."""
    data = body.encode("ascii")
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(data)} bytes is too large")
    return HEADER.pack(len(data)) + data


def unpack(body: bytes) -> dict[str, Any]:
    """The message in a frame body; raises `ProtocolError` if it is not a JSON object."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"bad frame: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad frame: not a JSON object")
    return message


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """Blocking read of one frame (the worker side); None at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return unpack(body)


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    """Blocking write of one frame (the worker side)."""
    stream.write(pack(message))
    stream.flush()
