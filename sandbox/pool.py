"""`Sandbox`: a pool of warm worker processes that run scripts under hard limits.

Every limit that protects the gateway is enforced on this side, where a hostile script has
no say: each run is a `Conversation` with one worker (wall-clock timeout, the size of each
frame read back), and here a worker that did not finish cleanly is killed and replaced.
Runs beyond the pool size wait for a free worker rather than starting extra processes, so
the number of workers (and their memory) is bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Self

import anyio

from .conversation import Conversation
from .limits import Limits
from .process import SandboxError, Worker
from .result import ExecutionResult, ToolCaller, failed

log = logging.getLogger("sandbox")


DEFAULT_LIMITS = Limits()


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
            return failed(
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
        return failed("runtime", "script worker died before the script started")

    async def _attempt(
        self, worker: Worker, code: str, servers: list[str], call: ToolCaller, limits: Limits
    ) -> ExecutionResult | None:
        """One run on one worker; None if the worker could not even be sent the script.

        A worker that did not finish cleanly is killed and replaced.
        """
        talk = Conversation(worker, call, limits)
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
            return failed("runtime", "the sandbox was closed during the run", talk.tool_calls)
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
