"""One script run inside a worker: the Starlark interpreter, its builtins, and the tool-call channel.

Runs only in the worker process (it imports starlark_go, whose Go runtime a memory limit
or a bad value can abort). Tool calls block on the pipe to the gateway: the script waits
while the gateway calls the upstream tool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import starlark_go as sg

from .diagnose import SCRIPT, Located, describe
from .limits import Limits
from .rewrite import rewrite_with_edits
from .values import BoundaryError, clean_str, encode_json, json_decode, json_encode, plain

# Runs before every script in the same interpreter. Values leaving the script are checked
# here, in Starlark, because starlark-go's own conversion recurses without a depth check and
# aborts the process on a self-referencing list; `*args` keeps every keyword (even `name`)
# free for the tool. `print` is replaced because starlark-go's print hook segfaults on a
# string that is not valid UTF-8, where an ordinary builtin call fails cleanly.
PRELUDE = """
def _plain(v, depth, what):
    t = type(v)
    if t in ("NoneType", "bool", "int", "float", "string"):
        return v
    if depth >= _max_depth:
        _fail("%s: value nested deeper than %d levels (limits.max_depth)" % (what, _max_depth))
    if t in ("list", "tuple", "set"):
        return [_plain(x, depth + 1, what) for x in v]
    if t == "dict":
        out = {}
        for k, x in v.items():
            if type(k) != "string":
                _fail("%s: dict key of type %s; keys must be strings" % (what, type(k)))
            out[k] = _plain(x, depth + 1, what)
        return out
    _fail("%s: a value of type %s cannot leave the script " % (what, t) +
          "(only None, bool, int, float, string, list, tuple and dict can)")

def _tool_name(fn, args):
    if len(args) == 0 or type(args[0]) != "string":
        _fail('%s needs the tool as its first argument, e.g. %s("server.tool", x=1)' % (fn, fn))
    if len(args) > 1:
        _fail("%s takes keyword arguments only, e.g. %s(x=1)" % (args[0], args[0]))
    return args[0]

def call_tool(*args, **kwargs):
    name = _tool_name("call_tool", args)
    return _call_tool(name, _plain(kwargs, 0, "arguments of " + name))

def try_call(*args, **kwargs):
    name = _tool_name("try_call", args)
    return _try_call(name, _plain(kwargs, 0, "arguments of " + name))

def json_encode(value):
    return _json_encode(_plain(value, 0, "json_encode value"))

def print(*args, sep = " "):
    _print(sep.join([str(a) for a in args]))
"""

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
        data = text.encode("utf-8", "replace")
        room = self.limit - self.size
        if len(data) <= room:
            self.parts.append(text)
            self.size += len(data)
            return
        kept = data[: max(room, 0)].decode("utf-8", "ignore")
        self.parts.append(kept)
        kept_size = len(kept.encode("utf-8"))
        self.size += kept_size
        self.dropped += len(data) - kept_size

    def text(self) -> str:
        return "".join(self.parts)


class Session:
    """Builtins and bookkeeping for one run.

    starlark-go does not keep references to the callables it is given, so the session holds
    them (in `self.globals`) for as long as the interpreter lives.
    """

    def __init__(self, channel: Channel, limits: Limits) -> None:
        self.channel = channel
        self.limits = limits
        self.output = Output(limits.max_output_bytes)
        self.tool_calls = 0
        self.failure: tuple[str, str] | None = None
        self.globals: dict[str, Any] = {
            "_call_tool": self._call_tool,
            "_try_call": self._try_call,
            "_json_encode": self._json_encode,
            "_fail": self._fail,
            "_print": self._print,
            "_max_depth": limits.max_depth,
            "json_decode": self._json_decode,
        }

    def execute(self, code: str, servers: list[str]) -> tuple[Any, dict[str, Any] | None]:
        """Run `code`; returns (value of `result`, None) or (None, error dict)."""
        code = clean_str(code)  # starlark-go cannot take a source with lone surrogates
        source, edits = rewrite_with_edits(code, servers)
        where = Located(code, edits, servers)
        interp = sg.Starlark(globals=self.globals)
        try:
            interp.exec(PRELUDE, filename="<prelude>")
            interp.exec(source, filename=SCRIPT)
            if "result" not in interp.globals():
                return None, None
            value = interp.eval('_plain(result, 0, "result")', filename="<result>")
            return plain(value, self.limits.max_depth, "result"), None
        except Exception as exc:  # every failure, whatever raised it, becomes the script's error
            return None, describe(exc, where, self.failure)

    def _print(self, message: str) -> None:
        self.output.write(message + "\n")

    def _fail(self, message: str, kind: str = "runtime") -> NoReturn:
        self.failure = (kind, message)
        raise ScriptFailure(message)

    def _call_tool(self, name: str, args: dict[str, Any]) -> Any:
        ok, value = self._request(name, args)
        if not ok:
            self._fail(value if name in value else f"{name}: {value}", "tool")
        return value

    def _try_call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        ok, value = self._request(name, args)
        return {"ok": True, "value": value} if ok else {"ok": False, "error": value}

    def _request(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """Ask the gateway to call `name`; (True, value) or (False, error message)."""
        limits = self.limits
        if len(name) > MAX_TOOL_NAME:
            self._fail(f"not a tool name: {name[:40]!r}... ({len(name)} characters)")
        if self.tool_calls >= limits.max_tool_calls:
            self._fail(
                f"script exceeded the limit of {limits.max_tool_calls} tool calls (limits.max_tool_calls)",
                "limit",
            )
        size = len(encode_json(args))
        if size > limits.max_result_bytes:
            self._fail(
                f"arguments of {name} are {size} bytes, over the limit of "
                f"{limits.max_result_bytes} bytes (limits.max_result_bytes)",
                "limit",
            )
        self.tool_calls += 1
        reply = self.channel({"op": "call", "name": name, "args": args})
        if not reply.get("ok"):
            return False, str(reply.get("error") or "unknown error")
        try:
            return True, plain(reply.get("value"), limits.max_depth, f"the result of {name}")
        except BoundaryError as exc:
            return False, str(exc)

    def _json_encode(self, value: Any) -> str:
        try:
            return json_encode(value)
        except BoundaryError as exc:
            self._fail(str(exc))

    def _json_decode(self, text: Any) -> Any:
        if not isinstance(text, str):
            self._fail(f"json_decode: expected a string, got {type(text).__name__}")
        try:
            return json_decode(text, self.limits.max_depth)
        except BoundaryError as exc:
            self._fail(str(exc))
