"""The conversation with one worker during one run: send the script, answer its tool calls, read its result.

The gateway's side of the frames in `protocol`, enforced whatever the worker sends (and
beside it the watch over the worker's resident memory, `Worker.guard_memory`): every
frame read back is bounded in size, a frame the worker may not send mid-run ends the run,
and the tool-call limit and the tool-result limit are checked again here. A `parallel`
batch runs its calls concurrently, at most `MAX_PARALLEL` at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio

from .limits import Limits
from .memory import EXIT_MEMORY, limit_message
from .process import Worker
from .protocol import ProtocolError
from .result import ExecutionResult, ScriptError, ToolCaller, ToolError, failed
from .values import BoundaryError, NotEncodable, TooLarge, encode_json, encode_plain, finish

log = logging.getLogger("sandbox")


MAX_PARALLEL = 16
"""Calls of one `parallel` batch in flight at once; the others wait for a free slot."""

_PER_CALL_FRAME = 6 * 256 + 64
"""Frame room per call in a batch beyond its arguments: the name (escaped) and the keys."""


@dataclass
class _Outcome:
    """One tool call's answer for the worker: the encoded JSON value, or an error message."""

    ok: bool
    text: str

    def fields(self) -> str:
        """The reply's fields as JSON text (without braces)."""
        if self.ok:
            return '"ok":true,"value":' + self.text
        return '"ok":false,"error":' + encode_json(self.text)


class Conversation:
    """The frames of one run: send the script, answer its tool calls, read its result."""

    def __init__(self, worker: Worker, call: ToolCaller, limits: Limits) -> None:
        self.worker = worker
        self.call = call
        self.limits = limits
        self.tool_calls = 0
        self.slots = anyio.CapacityLimiter(MAX_PARALLEL)
        # the largest frame a well-behaved worker can send: result or arguments, output and
        # source text escaped to ASCII, the names of a batch of calls, plus room for the rest
        self.max_frame = (
            limits.max_result_bytes
            + 6 * (limits.max_output_bytes + 4096)
            + limits.max_tool_calls * _PER_CALL_FRAME
            + 65536
        )

    async def run_timed(
        self, code: str, servers: list[str], *, deadline: float | None = None, waited: float = 0.0
    ) -> tuple[ExecutionResult | None, bool]:
        """`run` under the wall-clock limit (tool calls included) and the memory limit.

        `deadline` (in `anyio.current_time()`) is when `timeout_s` runs out, if the caller set it
        already; `waited` is the part of it the run spent waiting for a worker, for the message.
        """
        if deadline is None:
            deadline = anyio.current_time() + self.limits.timeout_s - waited
        with anyio.CancelScope(deadline=deadline):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.worker.guard_memory, self.limits.memory_mb)
                result, reusable = await self.run(code, servers)
                tg.cancel_scope.cancel()
            return result, reusable and not self.worker.over_memory
        message = f"script exceeded the time limit of {self.limits.timeout_s:g} s (limits.timeout_s)"
        if waited:
            message += f", {waited:.1f} s of it waiting for a sandbox worker"
        return failed("limit", message, self.tool_calls), False

    async def run(self, code: str, servers: list[str]) -> tuple[ExecutionResult | None, bool]:
        """(result, whether the worker can be reused); no result if the script could not be sent."""
        frame = {"op": "run", "code": code, "servers": servers, "limits": self.limits.to_dict()}
        if not await self.worker.send(frame) or not await self._started():
            return None, False
        while True:
            try:
                message = await self._receive()
            except ProtocolError as exc:
                log.error("sandbox worker %d broke the protocol: %s", self.worker.pid, exc)
                return failed("runtime", f"script worker misbehaved: {exc}", self.tool_calls), False
            if message is None:
                return await self._died(), False
            if message["op"] == "done":
                return self._done(message), message.get("retire") is not True
            answer = self._answer if message["op"] == "call" else self._answer_batch
            if not await answer(message):
                return await self._died(), False

    async def _receive(self) -> dict[str, Any] | None:
        """The worker's next frame (None if it is gone); one a worker may not send mid-run is a ProtocolError.

        So a bad frame and an unexpected one end the run the same way, in one handler.
        """
        message = await self.worker.receive(self.max_frame)
        if message is not None and message.get("op") not in ("done", "call", "calls"):
            raise ProtocolError(f"unexpected frame {message.get('op')!r:.40}")
        return message

    async def _started(self) -> bool:
        """Whether the worker acknowledged the script (so it is the script's run from here on)."""
        try:
            message = await self.worker.receive(1024)
        except ProtocolError:
            return False
        return message is not None and message.get("op") == "started"

    def _take(self, count: int) -> bool:
        """Count `count` more tool calls, unless that would pass `max_tool_calls`.

        The worker checks this limit first and words it for the script; this check is for a
        worker that does not, so no script gets more calls whatever its process does.
        """
        if self.tool_calls + count > self.limits.max_tool_calls:
            return False
        self.tool_calls += count
        return True

    def _over_calls(self) -> str:
        return f"script exceeded the limit of {self.limits.max_tool_calls} tool calls (limits.max_tool_calls)"

    async def _answer(self, message: dict[str, Any]) -> bool:
        """Run one tool call in the gateway and send the reply; False if the worker is gone."""
        name, args = message.get("name"), message.get("args")
        if not isinstance(name, str) or not isinstance(args, dict):
            outcome = _Outcome(False, "malformed tool call")
        elif not self._take(1):
            outcome = _Outcome(False, self._over_calls())
        else:
            outcome = await self._call(name, args)
        return await self.worker.send_encoded('{"op":"reply",' + outcome.fields() + "}")

    async def _answer_batch(self, message: dict[str, Any]) -> bool:
        """Run a `parallel` batch concurrently and send one `replies` frame; False if the worker is gone.

        With `stop_on_error` the first failure cancels the calls still running and the reply
        names it in `failed`. Results are held against one budget of `max_tool_result_bytes`
        as they arrive, so the batch never holds more than that (plus the one result in hand).
        """
        calls = message.get("calls")
        stop = message.get("stop_on_error") is True
        if not isinstance(calls, list) or not calls:
            return await self.worker.send({"op": "replies", "error": "malformed parallel batch"})
        if not self._take(len(calls)):
            return await self.worker.send({"op": "replies", "error": self._over_calls()})
        batch = _Batch(len(calls), self.limits.max_tool_result_bytes)
        async with anyio.create_task_group() as tg:
            for index, item in enumerate(calls):
                tg.start_soon(self._batch_member, batch, index, item, tg.cancel_scope if stop else None)
        return await self.worker.send_encoded(batch.reply())

    async def _batch_member(self, batch: _Batch, index: int, item: Any, stop: anyio.CancelScope | None) -> None:
        name = item.get("name") if isinstance(item, dict) else None
        args = item.get("args") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(args, dict):
            outcome = _Outcome(False, "malformed tool call")
        else:
            async with self.slots:
                outcome = await self._call(name, args)
            if outcome.ok and not batch.fits(len(outcome.text)):
                outcome = self._too_large(name, len(outcome.text), batch=True)
        batch.outcomes[index] = outcome
        if not outcome.ok and stop is not None:
            batch.failed.append(index)
            stop.cancel()

    async def _call(self, name: str, args: dict[str, Any]) -> _Outcome:
        """Call the tool through the gateway; the result as JSON text, bounded in depth and size."""
        try:
            raw = await self.call(name, args)
        except ToolError as exc:
            return _Outcome(False, str(exc) or f"{name} failed")
        except Exception as exc:  # a broken caller must not take the run down with a traceback
            log.exception("tool caller raised for %s", name)
            return _Outcome(False, f"{name} failed: {type(exc).__name__}: {exc}")
        limit = self.limits.max_tool_result_bytes
        try:  # in steps: a big result must not hold the event loop (and every other caller) for long
            text = await finish(encode_plain(raw, self.limits.max_depth, f"the result of {name}", max_bytes=limit))
        except TooLarge as exc:
            return self._too_large(name, exc.at_least, at_least=True)
        except NotEncodable as exc:
            return _Outcome(False, f"{name} returned a value that cannot cross: {exc}")
        except BoundaryError as exc:
            return _Outcome(False, str(exc))
        return self._too_large(name, len(text)) if len(text) > limit else _Outcome(True, text)

    def _too_large(self, name: str, size: int, *, at_least: bool = False, batch: bool = False) -> _Outcome:
        limit = self.limits.max_tool_result_bytes
        if batch:
            what = f"the result of {name} ({size} bytes) takes the results of this parallel batch"
        else:
            what = f"the result of {name} is {'at least ' if at_least else ''}{size} bytes as JSON,"
        return _Outcome(
            False,
            f"{what} over the limit of {limit} bytes (limits.max_tool_result_bytes); "
            "ask the tool for less (a filter, a smaller page, fewer fields)",
        )

    def _done(self, message: dict[str, Any]) -> ExecutionResult:
        error = message.get("error")
        output = message.get("output")
        dropped = message.get("output_truncated_bytes")
        return ExecutionResult(
            output=output if isinstance(output, str) else "",
            value=message.get("value") if error is None else None,
            error=ScriptError.from_dict(error) if isinstance(error, dict) else None,
            tool_calls=self.tool_calls,
            output_truncated_bytes=dropped if isinstance(dropped, int) else 0,
        )

    async def _died(self) -> ExecutionResult:
        """The error for a worker that stopped mid-run; almost always the memory limit.

        Certainly so when either memory watch stopped it (`memory`) or the Go runtime said it
        ran out of memory (RLIMIT_DATA); Go stacks are resident memory too, so runaway
        recursion ends the same way. Only a crash the Go runtime names as something else
        (e.g. SIGSEGV) is reported as a crash.
        """
        code = await self.worker.exit_code()
        why = self.worker.stderr_summary()
        log.warning("sandbox worker %d died (exit code %s): %s", self.worker.pid, code, why or "no output")
        if self.worker.over_memory or code == EXIT_MEMORY or any(s in why for s in _OUT_OF_MEMORY):
            return failed("limit", limit_message(self.limits.memory_mb), self.tool_calls)
        if why.startswith("SIG"):
            return failed("runtime", f"script worker crashed (exit code {code}): {why}", self.tool_calls)
        message = (
            f"script worker died (exit code {code}): likely exceeded the memory limit of "
            f"{self.limits.memory_mb} MiB (limits.memory_mb)"
        )
        return failed("limit", message, self.tool_calls)


_OUT_OF_MEMORY = (
    "out of memory",
    "cannot allocate memory",
    "malloc failed",
    "pthread_create failed",  # a thread's stack is data too: RLIMIT_DATA refuses it
    "failed to create new OS thread",
    "MemoryError",
)
"""What the Go runtime (or Python) says on stderr as it aborts for want of memory."""


class _Batch:
    """The answers of one `parallel` batch as they arrive, and the bytes they hold."""

    def __init__(self, size: int, limit: int) -> None:
        self.outcomes: list[_Outcome | None] = [None] * size
        self.failed: list[int] = []
        self.left = limit

    def fits(self, size: int) -> bool:
        """Take `size` bytes of the batch's budget, if there is that much left."""
        if size > self.left:
            return False
        self.left -= size
        return True

    def reply(self) -> str:
        """The `replies` frame as JSON text; after a stop only the failure is sent."""
        failed = min(self.failed) if self.failed else None
        parts: list[str] = []
        for index, outcome in enumerate(self.outcomes):
            if outcome is None or (failed is not None and index != failed):
                parts.append('{"ok":false,"error":"cancelled"}')
            else:
                parts.append("{" + outcome.fields() + "}")
        head = '{"op":"replies","failed":' + ("null" if failed is None else str(failed))
        return head + ',"replies":[' + ",".join(parts) + "]}"
