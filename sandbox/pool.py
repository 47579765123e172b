"""`Sandbox`: a pool of warm worker processes that run scripts under hard limits.

Every limit that protects the gateway is enforced from here, where a hostile script has no
say: the wall-clock timeout (kill the worker), worker death (report and replace), and the
size of each frame read back. Runs beyond the pool size wait for a free worker rather than
starting extra processes, so the number of workers (and their memory) is bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, Self

import anyio

from .limits import Limits
from .process import SandboxError, Worker
from .protocol import ProtocolError
from .result import ExecutionResult, ScriptError, ToolCaller, ToolError
from .values import BoundaryError, plain

log = logging.getLogger("sandbox")


DEFAULT_LIMITS = Limits()


def _failed(kind: str, message: str, tool_calls: int = 0) -> ExecutionResult:
    return ExecutionResult("", None, ScriptError(kind, message), tool_calls, 0)


class Sandbox:
    """Runs Starlark scripts in `workers` warm processes; use `async with Sandbox() as sb:`."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.limits = limits
        self.size = workers
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._running: set[anyio.CancelScope] = set()
        self._slots: anyio.Semaphore | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the workers now, so the first scripts do not pay for it.

        Raises `SandboxError` (not an exception group) if a worker cannot start.
        """
        self._closed = False
        errors: list[SandboxError] = []

        async def add() -> None:
            try:
                await self._add_idle()
            except SandboxError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(self.size - len(self._idle)):
                tg.start_soon(add)
        if errors:
            await self.aclose()
            raise errors[0]

    async def aclose(self) -> None:
        """Kill every worker, including those running a script (their runs end with an error)."""
        self._closed = True
        for scope in self._running:
            scope.cancel()
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        for worker in workers:
            await worker.kill()

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        return [w.pid for w in (*self._idle, *self._busy)]

    async def run(
        self, code: str, servers: Collection[str], call: ToolCaller, limits: Limits | None = None
    ) -> ExecutionResult:
        """Run `code` with `server.tool(...)` bound for each of `servers`, calling tools through `call`.

        Script problems come back in `ExecutionResult.error`; only a sandbox that cannot
        start a worker raises (`SandboxError`).
        """
        limits = limits or self.limits
        size = len(code.encode("utf-8", "surrogatepass"))
        if size > limits.max_source_bytes:
            return _failed(
                "limit",
                f"script is {size} bytes, over the limit of {limits.max_source_bytes} bytes (limits.max_source_bytes)",
            )
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if self._slots is None:
            self._slots = anyio.Semaphore(self.size)
        async with self._slots:
            return await self._run_on_worker(code, list(servers), call, limits)

    async def _run_on_worker(self, code: str, servers: list[str], call: ToolCaller, limits: Limits) -> ExecutionResult:
        """Run on a worker, again on another if one turns out to have died before starting.

        (An idle worker can die unnoticed, e.g. to the OOM killer; that is not the script's fault.)
        """
        for _ in range(self.size + 1):
            result = await self._attempt(await self._checkout(), code, servers, call, limits)
            if result is not None:
                return result
        return _failed("runtime", "script worker died before the script started")

    async def _attempt(
        self, worker: Worker, code: str, servers: list[str], call: ToolCaller, limits: Limits
    ) -> ExecutionResult | None:
        """One run on one worker; None if the worker could not even be sent the script.

        A worker that did not finish cleanly is killed and replaced.
        """
        talk = _Conversation(worker, call, limits)
        healthy = False
        result: ExecutionResult | None = None
        with anyio.CancelScope() as stop:  # cancelled by aclose()
            self._running.add(stop)
            try:
                result, healthy = await talk.run_timed(code, servers)
            finally:
                self._running.discard(stop)
                self._busy.discard(worker)
                if healthy and not self._closed:
                    self._idle.append(worker)
                else:
                    await worker.kill()
        if self._closed and not healthy:
            return _failed("runtime", "the sandbox was closed during the run", talk.tool_calls)
        if not healthy:
            await self._replace()
        return result

    async def _checkout(self) -> Worker:
        """An idle live worker, or a new one if none is left."""
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                self._busy.add(worker)
                return worker
            await worker.kill()
        worker = await Worker.spawn(self.limits.memory_mb)
        self._busy.add(worker)
        return worker

    async def _replace(self) -> None:
        """Bring the pool back to size after a worker was killed; a failure here is only logged."""
        if self._closed or len(self._idle) + len(self._busy) >= self.size:
            return
        try:
            await self._add_idle()
        except SandboxError as exc:
            log.warning("could not replace a sandbox worker: %s", exc)

    async def _add_idle(self) -> None:
        worker = await Worker.spawn(self.limits.memory_mb)
        if self._closed:
            await worker.kill()
        else:
            self._idle.append(worker)


class _Conversation:
    """The frames of one run: send the script, answer its tool calls, read its result."""

    def __init__(self, worker: Worker, call: ToolCaller, limits: Limits) -> None:
        self.worker = worker
        self.call = call
        self.limits = limits
        self.tool_calls = 0
        # the largest frame a well-behaved worker can send: result or arguments, output and
        # source text escaped to ASCII, plus room for the rest
        self.max_frame = limits.max_result_bytes + 6 * (limits.max_output_bytes + 4096) + 65536

    async def run_timed(self, code: str, servers: list[str]) -> tuple[ExecutionResult | None, bool]:
        """`run` under the wall-clock limit (tool calls included)."""
        with anyio.move_on_after(self.limits.timeout_s):
            return await self.run(code, servers)
        message = f"script exceeded the time limit of {self.limits.timeout_s:g} s (limits.timeout_s)"
        return _failed("limit", message, self.tool_calls), False

    async def run(self, code: str, servers: list[str]) -> tuple[ExecutionResult | None, bool]:
        """(result, whether the worker can be reused); no result if the script could not be sent."""
        frame = {"op": "run", "code": code, "servers": servers, "limits": self.limits.to_dict()}
        if not await self.worker.send(frame) or not await self._started():
            return None, False
        while True:
            try:
                message = await self.worker.receive(self.max_frame)
            except ProtocolError as exc:
                log.error("sandbox worker %d broke the protocol: %s", self.worker.pid, exc)
                return _failed("runtime", f"script worker misbehaved: {exc}", self.tool_calls), False
            if message is None:
                return await self._died(), False
            op = message.get("op")
            if op == "done":
                return self._done(message), True
            if op != "call" or not await self._answer(message):
                return await self._died(), False

    async def _started(self) -> bool:
        """Whether the worker acknowledged the script (so it is the script's run from here on)."""
        try:
            message = await self.worker.receive(1024)
        except ProtocolError:
            return False
        return message is not None and message.get("op") == "started"

    async def _answer(self, message: dict[str, Any]) -> bool:
        """Run one tool call in the gateway and send the reply; False if the worker is gone."""
        self.tool_calls += 1
        name, args = message.get("name"), message.get("args")
        if not isinstance(name, str) or not isinstance(args, dict):
            reply: dict[str, Any] = {"op": "reply", "ok": False, "error": "malformed tool call"}
        else:
            reply = await self._call(name, args)
        try:
            return await self.worker.send(reply)
        except BoundaryError as exc:
            return await self.worker.send({"op": "reply", "ok": False, "error": f"{name} returned {exc}"})

    async def _call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            value = plain(await self.call(name, args), self.limits.max_depth, f"the result of {name}")
        except ToolError as exc:
            return {"op": "reply", "ok": False, "error": str(exc) or f"{name} failed"}
        except BoundaryError as exc:
            return {"op": "reply", "ok": False, "error": str(exc)}
        except Exception as exc:  # a broken caller must not take the run down with a traceback
            log.exception("tool caller raised for %s", name)
            return {"op": "reply", "ok": False, "error": f"{name} failed: {type(exc).__name__}: {exc}"}
        return {"op": "reply", "ok": True, "value": value}

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

        RLIMIT_DATA also bounds the Go stack, so runaway recursion ends the same way. Only
        a crash the Go runtime names as something else (e.g. SIGSEGV) is reported as a crash.
        """
        code = await self.worker.exit_code()
        why = self.worker.stderr_summary()
        log.warning("sandbox worker %d died (exit code %s): %s", self.worker.pid, code, why or "no output")
        if why.startswith("SIG") and "memory" not in why:
            return _failed("runtime", f"script worker crashed (exit code {code}): {why}", self.tool_calls)
        message = (
            f"script worker died (exit code {code}): likely exceeded the memory limit of "
            f"{self.limits.memory_mb} MiB (limits.memory_mb)"
        )
        return _failed("limit", message, self.tool_calls)
