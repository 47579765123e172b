"""`Sandbox`: a pool of warm worker processes that run scripts under hard limits.

Every limit that protects the gateway is enforced on this side, where a hostile script has
no say: each run is a `Conversation` with one worker (wall-clock timeout, the size of each
frame read back), and here a worker that did not finish cleanly is killed and replaced.
Runs take a slot from the `FairQueue` first (fair between keys, bounded, timed); a run with
a slot takes an idle worker or starts one. Idle workers beyond what the slots can use are
retired, so there are never more than `max_workers` processes (and their memory).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Self

import anyio

from .conversation import Conversation
from .limits import Limits, PoolLimits
from .process import SandboxError, Worker
from .queue import FairQueue, Refused
from .result import ExecutionResult, ToolCaller, failed

log = logging.getLogger("sandbox")


DEFAULT_LIMITS = Limits()
DEFAULT_POOL = PoolLimits()


class Sandbox:
    """Runs Starlark scripts in `workers` warm processes; use `async with Sandbox() as sb:`.

    While every warm worker is busy, a key with no script running gets an extra worker, up
    to `pool.max_workers` processes in all; extra ones are retired once idle.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, workers: int = 2, pool: PoolLimits = DEFAULT_POOL) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.limits = limits
        self.pool = pool
        self.size = workers
        self.max_workers = pool.worker_cap(workers)
        self.queue = FairQueue(workers, self.max_workers, pool.max_queued_per_key, pool.max_queued)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._spawning = 0
        self._running: set[anyio.CancelScope] = set()
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
        self.queue.closed = False
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
        self.queue.close()
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
        self,
        code: str,
        servers: Collection[str],
        call: ToolCaller,
        limits: Limits | None = None,
        *,
        owner: str = "",
    ) -> ExecutionResult:
        """Run `code` with `server.tool(...)` bound for each of `servers`, calling tools through `call`.

        `owner` (the caller's key name) is whose turn it is in the queue for a worker. Script
        problems, and a run the queue refuses, come back in `ExecutionResult.error`; only a
        sandbox that cannot start a worker raises (`SandboxError`).
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
        if self.pool.queue_timeout_s < limits.timeout_s:
            wait_s, wait_limit = self.pool.queue_timeout_s, "limits.queue_timeout_s"
        else:
            wait_s, wait_limit = limits.timeout_s, "limits.timeout_s"
        try:
            async with self.queue.slot(owner, wait_s, wait_limit) as waited:
                return await self._run_on_worker(code, list(servers), call, limits, waited)
        except Refused as exc:
            return failed(exc.kind, str(exc))
        finally:
            await self._retire_idle()

    async def _run_on_worker(
        self, code: str, servers: list[str], call: ToolCaller, limits: Limits, waited: float
    ) -> ExecutionResult:
        """Run on a worker, again on another if one turns out to have died before starting.

        (An idle worker can die unnoticed, e.g. to the OOM killer; that is not the script's fault.)
        A run that waited for its slot has only what is left of `timeout_s`.
        """
        deadline = anyio.current_time() + limits.timeout_s - waited if waited else None
        for _ in range(self.size + 1):
            result = await self._attempt(await self._checkout(), code, servers, call, limits, deadline, waited)
            if result is not None:
                return result
        return failed("runtime", "script worker died before the script started")

    async def _attempt(
        self, worker: Worker, code: str, servers: list[str], call: ToolCaller, limits: Limits,
        deadline: float | None, waited: float,
    ) -> ExecutionResult | None:
        """One run on one worker; None if the worker could not even be sent the script.

        `deadline` is when what is left of `timeout_s` after `waited` s for a slot runs out
        (None: the run did not wait, and has the whole `timeout_s` from when it starts).
        A worker that did not finish cleanly is killed and replaced.
        """
        talk = Conversation(worker, call, limits)
        healthy = False
        result: ExecutionResult | None = None
        with anyio.CancelScope() as stop:  # cancelled by aclose()
            self._running.add(stop)
            try:
                result, healthy = await talk.run_timed(code, servers, deadline=deadline, waited=waited)
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
        worker = await self._spawn()
        if self._closed:  # closed while it started: it must not outlive aclose()
            await worker.kill()
            raise SandboxError("the sandbox is closed")
        self._busy.add(worker)
        return worker

    async def _replace(self) -> None:
        """Bring the pool back to size after a worker was killed; a failure here is only logged."""
        if self._closed or self._processes() >= self.size:
            return
        try:
            await self._add_idle()
        except SandboxError as exc:
            log.warning("could not replace a sandbox worker: %s", exc)

    async def _add_idle(self) -> None:
        worker = await self._spawn()
        if self._closed:
            await worker.kill()
        else:
            self._idle.append(worker)

    async def _spawn(self) -> Worker:
        self._spawning += 1
        try:
            return await Worker.spawn(self.limits.memory_mb)
        finally:
            self._spawning -= 1

    def _processes(self) -> int:
        return len(self._idle) + len(self._busy) + self._spawning

    async def _retire_idle(self) -> None:
        """Kill idle workers the slots cannot use: keep `workers`, plus one spare while all are busy.

        Each slot holds at most one worker, so this keeps the processes within `max_workers`;
        the spare lets the next key that arrives while every warm worker is busy start at once.
        """
        running = self.queue.running
        keep = self.size if running < self.size else min(self.max_workers, running + 1)
        while self._idle and self._processes() > keep:
            await self._idle.pop(0).kill()
