"""JSON-RPC messages from an upstream: parsed with bounded memory, refused past `max_message_bytes`.

Messages are parsed by `json.loads`, then validated (`parse_message`): the SDK's own parse takes
about six times the memory for many small values (1 GiB for 16 MiB of `{"i": n, "s": "x"}`
objects, against 175 MiB). A refused message becomes an error for the request it answered
(`answered_id` finds it from the message's first and last bytes), so the session goes on.

A big tool result's structured content is held aside while the SDK's client handles the message
(`hold`, `restore`): the SDK checks each result against the protocol's schema by validating and
dumping it, a walk over every value and a whole copy (for 3.5 MB of small objects 35 MiB and
40 ms of the event loop) thrown away at once. It sees a stand-in instead: a string to the SDK,
which carries the content, and which `Upstream.call_tool` opens when the call returns. Nothing
else holds the content: an answer nobody waits for (its call gave up) is freed with its message,
and a value parsed from JSON is a plain string, so no upstream can forge one. The content is still
checked, against the tool's output schema, by the gateway (`validation`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import mcp_types as types

from .results import mib
from .visible import visible

KEEP = 256
"""Bytes kept of the start and of the end of a message over the limit, to find the request it answers."""
QUOTED = 200
"""Characters quoted of a message that is not JSON-RPC (a stdio server's stray output, say)."""
HOLD_FROM = 64 * 1024
"""Bytes of a message from which its result's structured content is held aside."""
STAND_IN = "io.mcp-gateway/held"
MAX_CONTAINERS = 500_000
"""Objects and arrays a message may hold (`{` and `[` counted, in strings too): parsed, each takes 56 bytes or
more however short its text, so 4 MiB of `{},` would grow the gateway by about 90 MiB."""


class TooManyValues(ValueError):
    """A message refused before it is parsed: it holds more than `MAX_CONTAINERS` objects and arrays."""


class _Held(str):
    """The stand-in for held content (its text is `STAND_IN`); only `hold` makes one."""

    __slots__ = ("content",)
    content: dict[str, Any]


def too_large(size: int, limit: int, *, exact: bool = True) -> str:
    """Why a message was refused, to follow "<server>.<tool> failed: "."""
    amount = f"{mib(size)}, more than" if exact else "over"
    return (f"its answer is {amount} the server's max_message_bytes ({mib(limit)}); "
            "ask the tool for less (a filter, a smaller page, fewer fields)")


def parse_message(data: bytes | bytearray) -> types.JSONRPCMessage:
    """One JSON-RPC message: `json.loads` (standard JSON only), then the SDK's models; else `ValueError`.
    A big result's structured content is held aside (`hold`)."""
    if len(data) >= HOLD_FROM and (containers := data.count(b"{") + data.count(b"[")) > MAX_CONTAINERS:
        raise TooManyValues(f"its answer holds {containers:,} objects and arrays, more than the gateway parses "
                            f"({MAX_CONTAINERS:,}); ask the tool for less (a filter, a smaller page)")
    try:
        value = json.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if len(data) >= HOLD_FROM:
        hold(value)
    return types.jsonrpc_message_adapter.validate_python(value, by_name=False)


def hold(message: Any) -> None:
    """Put a response's structured content (an object) in a stand-in, in its place."""
    result = message.get("result") if isinstance(message, dict) else None
    if isinstance(result, dict) and isinstance(content := result.get("structuredContent"), dict):
        stand_in = _Held(STAND_IN)
        stand_in.content = content
        result["structuredContent"] = {STAND_IN: stand_in}


def restore(result: types.CallToolResult) -> types.CallToolResult:
    """`result` with its held content in place of the stand-in."""
    content = result.structured_content
    if content is not None and len(content) == 1 and isinstance(held := content.get(STAND_IN), _Held):
        result.structured_content = held.content
    return result


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def not_json_rpc(data: bytes | bytearray, exc: ValueError) -> str:
    """Why `parse_message` refused `data`, quoting at most `QUOTED` characters of it (control characters escaped)."""
    if isinstance(exc, TooManyValues):
        return str(exc)
    text = bytes(data[: QUOTED * 4]).decode("utf-8", "replace").strip()
    why = next(iter(str(exc).splitlines()), type(exc).__name__)
    if len(text) > QUOTED or len(data) > QUOTED * 4:
        return f'its answer is not a JSON-RPC message: {why}; it began "{visible(text[:QUOTED])}…"'
    return f'its answer is not a JSON-RPC message: {why}; it was "{visible(text)}"'


def error_answer(request_id: types.RequestId | None, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id,
                              error=types.ErrorData(code=types.INTERNAL_ERROR, message=message))


_ID = rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")'
_VERSION = rb'(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?'
_ANSWER_HEAD = re.compile(rb"\s*\{\s*" + _VERSION + _ID + rb"\s*,\s*" + _VERSION + rb'"(?:result|error)"')
_ANSWER_FIRST = re.compile(rb"\s*\{\s*" + _VERSION + rb'"(?:result|error)"')
_ID_LAST = re.compile(_ID + rb"\s*\}\s*$")


def answered_id(head: bytes, tail: bytes) -> types.RequestId | None:
    """The id of a JSON-RPC response from the start and the end of its text, when they show it is one.

    Responses put `id` before `result` in every SDK; one that puts it last is found from the end.
    """
    found = _ANSWER_HEAD.match(head) or (_ID_LAST.search(tail) if _ANSWER_FIRST.match(head) else None)
    if found is None:
        return None
    value = json.loads(found.group(1))
    return value if isinstance(value, int | str) else None
