"""One script run inside a worker: the Starlark interpreter, its builtins, and the tool-call channel.

Runs only in the worker process (it imports starlark_go, whose Go runtime a memory limit
or a bad value can abort). Tool calls block on the pipe to the gateway: the script waits
while the gateway calls the upstream tool.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import Any, NoReturn

import starlark_go as sg

from .diagnose import SCRIPT, Located, describe, shorten
from .limits import Limits
from .memory import limit_message
from .prelude import FAIL_HEAD_BYTES, PRELUDE, RESERVED, RESULT_CHECK
from .result import KINDS
from .rewrite import find_name, rewrite_with_edits, split_servers
from .values import BoundaryError, clean_str, encode_json, json_decode, json_encode, plain

_NEWLINES = re.compile(r"\r\n?")


def normalize_newlines(code: str) -> str:
    """CR LF and a lone CR become LF: Python's tokenizer (which the reserved-name check and the call
    rewrite use) and Starlark's scanner would otherwise split the text into different lines."""
    return _NEWLINES.sub("\n", code)


MAX_TOOL_NAME = 256

Channel = Callable[[dict[str, Any]], dict[str, Any]]
"""Sends one frame to the gateway and returns its reply."""


class ScriptFailure(Exception):
    """Raised by a builtin to stop the script; the session records its kind first."""


class Output:
    """Printed text, keeping the first `limit` bytes and counting what is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
        room = self.limit - self.size
        if size <= room:
            self.parts.append(text)
            self.size += size
            return
        # a character is at least one byte, so `room` characters are enough to fill the room
        kept = text[: max(room, 0)].encode("utf-8", "replace")[: max(room, 0)].decode("utf-8", "ignore")
        self.parts.append(kept)
        kept_size = len(kept.encode("utf-8"))
        self.size += kept_size
        self.dropped += size - kept_size

    def text(self) -> str:
        return "".join(self.parts)


class Session:
    """Builtins and bookkeeping for one run.

    starlark-go does not keep references to the callables it is given, so the session holds
    them (in `self.globals`) for as long as the interpreter lives. `out_of_memory` is set when
    the run hit a MemoryError (RLIMIT_DATA): its worker should be replaced after it.
    A session runs one script; `prepare` may make its interpreter (and run the prelude) before
    the script arrives.
    """

    def __init__(self, channel: Channel, limits: Limits) -> None:
        self.channel = channel
        self.limits = limits
        self.output = Output(limits.max_output_bytes)
        self.tool_calls = 0
        self.failure: tuple[str, str] | None = None
        self.out_of_memory = False
        builtins: dict[str, Callable[..., Any]] = {
            "_sb_call": self._call_tool,
            "_sb_try_call": self._try_call,
            "_sb_calls": self._calls,
            "_sb_json_encode": self._json_encode,
            "_sb_fail": self._fail,
            "_sb_fail_text": self._fail_text,
            "_sb_print": self._print,
            "json_decode": self._json_decode,
        }
        self.globals: dict[str, Any] = {name: self._guarded(fn) for name, fn in builtins.items()}
        self.globals.update(
            _sb_max_depth=limits.max_depth,
            _sb_max_out=limits.max_result_bytes,
            _sb_max_in=limits.max_tool_result_bytes,
            _sb_max_calls=limits.max_tool_calls,
            _sb_fail_head=FAIL_HEAD_BYTES,
        )
        self.interp: sg.Starlark | None = None

    def prepare(self) -> sg.Starlark:
        """The run's interpreter with the prelude run in it, made now if not yet (about 0.3 ms)."""
        if self.interp is None:
            interp = sg.Starlark(globals=self.globals)
            interp.exec(PRELUDE, filename="<prelude>")
            self.interp = interp
        return self.interp

    def execute(self, code: str, servers: list[str]) -> tuple[Any, dict[str, Any] | None]:
        """Run `code`; returns (value of `result`, None) or (None, error dict).

        `servers` may also list direct-mode tools (`rewrite.direct_tool`), only for error messages.
        """
        code = clean_str(code)  # starlark-go cannot take a source with lone surrogates
        code = normalize_newlines(code)  # the checks below must see the lines Starlark sees
        servers, direct = split_servers(servers)
        source, edits = rewrite_with_edits(code, servers)
        where = Located(code, edits, servers, direct)
        reserved = find_name(code, RESERVED)
        if reserved is not None:
            line, column, name = reserved
            message = f"{name}: names starting with {RESERVED} are reserved for the sandbox"
            return None, Located(code, [], servers).error("resolve", message, line, column)
        try:
            interp = self.prepare()
            interp.exec(source, filename=SCRIPT)
            if "result" not in interp.globals():
                return None, None
            value = interp.eval(RESULT_CHECK, filename="<result>")
            return plain(value, self.limits.max_depth, "result"), None
        except MemoryError:  # outside a builtin: making the interpreter, converting `result`
            self.out_of_memory = True
            return None, where.error("limit", limit_message(self.limits.memory_mb), None, None)
        except Exception as exc:  # every failure, whatever raised it, becomes the script's error
            return None, describe(exc, where, self.failure)

    def _guarded(self, builtin: Callable[..., Any]) -> Callable[..., Any]:
        """`builtin`, with a MemoryError in it made the memory-limit error.

        starlark-go would pass the MemoryError on as an error with an empty message. The
        failure is raised after the `except` block, so the MemoryError (and what it holds) is gone.
        """

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return builtin(*args, **kwargs)
            except MemoryError:
                self.out_of_memory = True
            self._fail(limit_message(self.limits.memory_mb), "limit")

        return call

    def _print(self, message: str) -> None:
        self.output.write(message + "\n")

    def _fail(self, message: str, kind: str = "runtime") -> NoReturn:
        self.failure = (kind if kind in KINDS else "runtime", message)
        raise ScriptFailure(message)

    def _fail_text(self, head: list[int], size: int) -> NoReturn:
        """The script's `fail()`: `head` is the first bytes of its message (of `size` bytes in all).

        They come as numbers because the message need not be valid UTF-8 (a slice can cut a
        character); bytes that are not become U+FFFD, and a character cut at the end of `head`
        is left out.
        """
        data = bytes(head)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(data, final=len(data) >= size)
        self._fail(shorten(f"fail: {clean_str(text)}", size - len(data)))

    def _call_tool(self, name: str, args: dict[str, Any]) -> Any:
        ok, value = self._request(name, args)
        if not ok:
            self._fail(value if name in value else f"{name}: {value}", "tool")
        return value

    def _try_call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return _outcome(*self._request(name, args))

    def _request(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """Ask the gateway to call `name`; (True, value) or (False, error message)."""
        [call] = self._prepare([(name, args)])
        reply = self.channel({"op": "call", **call})
        if reply.get("op") != "reply":
            self._fail(f"the gateway answered a tool call with {reply.get('op')!r}")
        return self._value_of(name, reply)

    def _calls(self, fn: str, calls: list[list[Any]], stop: bool) -> list[Any]:
        """`parallel` (stop at the first failure) and `try_parallel` (every outcome as a dict).

        The whole batch goes to the gateway in one frame and comes back in one; each call
        counts against `max_tool_calls`, and their arguments together against `max_result_bytes`.
        The prelude's `_sb_batch` has already checked the batch's shape (scripts cannot reach
        this builtin directly), and the gateway refuses a batch only for what `_prepare` checks
        first (an empty or over-limit batch), so a gateway `error` is a runtime failure.
        """
        if not calls:
            return []
        batch = self._prepare([(name, args) for name, args in calls], fn)
        reply = self.channel({"op": "calls", "calls": batch, "stop_on_error": stop})
        if reply.get("op") != "replies":
            self._fail(f"the gateway answered {fn} with {reply.get('op')!r}")
        if isinstance(reply.get("error"), str):
            self._fail(f"{fn}: {reply['error']}")
        replies = reply.get("replies")
        if not isinstance(replies, list) or len(replies) != len(batch):
            self._fail(f"{fn}: the gateway's answer does not match the batch")
        outcomes = [self._value_of(call["name"], item) for call, item in zip(batch, replies, strict=True)]
        if not stop:
            return [_outcome(ok, value) for ok, value in outcomes]
        index = _failed_index(reply.get("failed"), outcomes)
        if index is not None:
            message = f"{fn}: call {index} ({batch[index]['name']}) failed: {outcomes[index][1]}"
            self._fail(message, "tool")
        return [value for _, value in outcomes]

    def _prepare(self, calls: list[tuple[str, Any]], fn: str | None = None) -> list[dict[str, Any]]:
        """Check and count calls about to go to the gateway; they become the frame's `{name, args}` items.

        One tool call (`fn` None) and a batch (`fn` the builtin) share this so both are held to
        the same limits in the same order; only the wording of the size error differs.
        """
        for name, _ in calls:
            self._check_name(name)
        self._reserve(len(calls), fn or calls[0][0])
        batch = [{"name": name, "args": self._plain_args(name, args)} for name, args in calls]
        size = sum(self._args_size(call["name"], call["args"]) for call in batch)
        limit = self.limits.max_result_bytes
        if size > limit:
            whose, together = (calls[0][0], "") if fn is None else (f"the {len(calls)} calls of {fn}", " together")
            message = f"arguments of {whose} are {size} bytes{together}, over the limit of {limit} bytes"
            self._fail(message + " (limits.max_result_bytes)", "limit")
        self.tool_calls += len(calls)
        return batch

    def _check_name(self, name: str) -> None:
        if len(name) > MAX_TOOL_NAME:
            self._fail(f"not a tool name: {name[:40]!r}... ({len(name)} characters)")

    def _reserve(self, count: int, what: str) -> None:
        """Fail if `count` more calls would pass `max_tool_calls`."""
        limit = self.limits.max_tool_calls
        if self.tool_calls + count <= limit:
            return
        if count == 1:
            message = f"script exceeded the limit of {limit} tool calls (limits.max_tool_calls)"
        else:
            message = (
                f"{what} of {count} calls would exceed the limit of {limit} tool calls "
                f"(limits.max_tool_calls); {self.tool_calls} made before it"
            )
        self._fail(message, "limit")

    def _plain_args(self, name: str, args: Any) -> Any:
        try:
            return plain(args, self.limits.max_depth, f"arguments of {name}")
        except BoundaryError as exc:
            self._fail(str(exc))

    def _args_size(self, name: str, args: Any) -> int:
        try:
            return len(encode_json(args))
        except BoundaryError as exc:
            self._fail(f"arguments of {name}: {exc}")

    def _value_of(self, name: str, reply: Any) -> tuple[bool, Any]:
        """(True, value) or (False, error message) from one reply of the gateway.

        The value is taken as it comes: the gateway made it with `plain` (depth bounded, strings
        cleaned) before encoding it as ASCII JSON, so decoding gives back that same plain value,
        and copying it again would cost seconds on a large result, against the script's time.
        The error text is the tool's own, so it is cleaned here, once, for Starlark.
        """
        if isinstance(reply, dict) and reply.get("ok"):
            return True, reply.get("value")
        error = reply.get("error") if isinstance(reply, dict) else None
        return False, clean_str(str(error or "unknown error"))

    def _json_encode(self, value: Any) -> str:
        try:
            return json_encode(plain(value, self.limits.max_depth, "json_encode value"))
        except BoundaryError as exc:
            self._fail(str(exc))

    def _json_decode(self, text: Any) -> Any:
        if not isinstance(text, str):
            self._fail(f"json_decode: expected a string, got {type(text).__name__}")
        try:
            return json_decode(text, self.limits.max_depth)
        except BoundaryError as exc:
            self._fail(str(exc))


def _outcome(ok: bool, value: Any) -> dict[str, Any]:
    """One call's outcome as `try_call` and `try_parallel` give it to the script."""
    return {"ok": True, "value": value} if ok else {"ok": False, "error": value}


def _failed_index(failed: Any, outcomes: list[tuple[bool, Any]]) -> int | None:
    """The call that stopped a `parallel` batch: the gateway's `failed` if valid, else the first failure."""
    if isinstance(failed, int) and 0 <= failed < len(outcomes):
        return failed
    return next((index for index, (ok, _) in enumerate(outcomes) if not ok), None)
