"""Admission of runs to the pool's workers: fair between keys, bounded, and timed.

Every run takes a slot before it gets a worker. Slots are granted by one rule, applied
whenever a run arrives or ends:

- while fewer than `workers` runs hold a slot, the next run may start (a warm worker);
- beyond that, up to `max_workers`, only a run of an owner with nothing running may start
  (an extra worker), so a key whose scripts hold every warm worker, even while they only
  wait on slow tools, cannot make another key wait for one of them to finish;
- among the owners that may start, the one with the fewest runs holding slots goes first,
  ties in round-robin order (the owner served longest ago).

So one owner never holds more than `workers` slots, and no owner gets another while one
with fewer waits. Waiting runs are bounded per owner and in all (`Refused` at once), and
a run that waits longer than it may is `Refused` too. An owner is the caller's key name.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

BUSY_ADVICE = "the gateway is busy with other scripts; try again shortly"


class Refused(Exception):
    """A run that will not start: a queue is full, it waited too long, or the sandbox closed.

    The message says what is full and what to do; `kind` is the script error's kind.
    """

    def __init__(self, message: str, kind: str = "limit") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(eq=False)
class _Waiter:
    owner: str
    woken: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False


@dataclass
class _Owner:
    waiting: deque[_Waiter] = field(default_factory=deque)
    running: int = 0


class FairQueue:
    """The slots of a pool of `workers` warm workers and at most `max_workers` in all."""

    def __init__(self, workers: int, max_workers: int, max_queued_per_key: int, max_queued: int) -> None:
        self.workers = workers
        self.max_workers = max_workers
        self.max_queued_per_key = max_queued_per_key
        self.max_queued = max_queued
        self.running = 0
        self.queued = 0
        self.closed = False
        self._owners: dict[str, _Owner] = {}  # in round-robin order: a served owner moves to the end

    def running_of(self, owner: str) -> int:
        """Slots `owner` holds now (for monitoring and tests)."""
        state = self._owners.get(owner)
        return state.running if state is not None else 0

    @asynccontextmanager
    async def slot(self, owner: str, wait_s: float, wait_limit: str) -> AsyncIterator[float]:
        """Hold a slot for one run of `owner`; yields the seconds it waited for it.

        Raises `Refused` if a queue is full or no slot came within `wait_s` (`wait_limit`
        names the setting that bounded the wait, for the message).
        """
        started = time.monotonic()
        waiter = await self._wait(owner, wait_s, wait_limit)
        try:
            yield 0.0 if waiter is None else time.monotonic() - started
        finally:
            self._release(owner)

    def close(self) -> None:
        """Wake every waiting run; they end with `Refused` (kind "runtime")."""
        self.closed = True
        for state in self._owners.values():
            for waiter in state.waiting:
                waiter.woken.set()

    async def _wait(self, owner: str, wait_s: float, wait_limit: str) -> _Waiter | None:
        """Take a slot, waiting if need be; the waiter if it had to wait, None if it started at once."""
        state = self._owners.setdefault(owner, _Owner())
        waiter = _Waiter(owner)
        state.waiting.append(waiter)
        self.queued += 1
        self._dispatch()
        if waiter.granted:
            return None
        refusal = self._over_bound(state)
        if refusal is not None:
            self._withdraw(waiter)
            raise Refused(refusal)
        try:
            with anyio.move_on_after(wait_s):
                await waiter.woken.wait()
        except BaseException:  # cancelled while waiting: give back what it holds
            if waiter.granted:
                self._release(owner)
            else:
                self._withdraw(waiter)
            raise
        if waiter.granted:
            return waiter
        self._withdraw(waiter)
        if self.closed:
            raise Refused("the sandbox was closed while the script waited for a worker", "runtime")
        raise Refused(f"script waited {wait_s:g} s for a sandbox worker without getting one ({wait_limit}); "
                      f"{BUSY_ADVICE}")

    def _over_bound(self, state: _Owner) -> str | None:
        """Why a run that has to wait may not (its own place in the queue counted), or None."""
        if len(state.waiting) > self.max_queued_per_key:
            return (f"this key already has {self.max_queued_per_key} scripts waiting for a sandbox worker, "
                    "the most it may queue (limits.max_queued_per_key); wait for them to finish before sending more")
        if self.queued > self.max_queued:
            return (f"{self.max_queued} scripts are already waiting for a sandbox worker, the most the gateway "
                    f"queues (limits.max_queued); {BUSY_ADVICE}")
        return None

    def _may_start(self, state: _Owner) -> bool:
        if self.closed:
            return False
        return self.running < self.workers or (self.running < self.max_workers and state.running == 0)

    def _dispatch(self) -> None:
        """Grant slots while some waiting owner may start: fewest running first, then round-robin."""
        while True:
            pick: tuple[str, _Owner] | None = None
            for name, state in self._owners.items():
                if state.waiting and self._may_start(state) and (pick is None or state.running < pick[1].running):
                    pick = (name, state)
            if pick is None:
                return
            name, state = pick
            waiter = state.waiting.popleft()
            self.queued -= 1
            state.running += 1
            self.running += 1
            self._owners[name] = self._owners.pop(name)  # served: to the back of the round
            waiter.granted = True
            waiter.woken.set()

    def _withdraw(self, waiter: _Waiter) -> None:
        state = self._owners[waiter.owner]
        state.waiting.remove(waiter)
        self.queued -= 1
        self._forget(waiter.owner, state)

    def _release(self, owner: str) -> None:
        state = self._owners[owner]
        state.running -= 1
        self.running -= 1
        self._forget(owner, state)
        self._dispatch()

    def _forget(self, owner: str, state: _Owner) -> None:
        """Drop an owner with nothing running or waiting, so the table holds only active owners."""
        if not state.waiting and state.running == 0:
            del self._owners[owner]
