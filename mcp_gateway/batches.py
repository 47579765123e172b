"""Rows booked on a hot path and written to the store in batches (the dashboard's reports).

Booking is a dictionary update: no store round trip, no await, no exception on the booking's path. A
writer task writes what was booked soon after it comes (at most every `every_s`), when asked (`flush`,
as a page that shows it is read) and at shutdown. A write that fails keeps the rows for the next
attempt, after `retry_s`, logged once per outage; beyond `limit` kept rows the oldest are dropped (and
counted): these are reports, so nothing waits or fails for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio
import structlog

log = structlog.get_logger("mcp_gateway.batches")

T = TypeVar("T")


class Batches(Generic[T]):
    """`add` rows; `run` writes them with `write`. Rows with the same `key` are combined with `merge`."""

    def __init__(self, what: str, write: Callable[[list[T]], Awaitable[None]], *, every_s: float, retry_s: float,
                 limit: int, key: Callable[[T], Hashable] | None = None,
                 merge: Callable[[T, T], T] | None = None) -> None:
        self.what = what
        self.write = write
        self.every_s = every_s
        self.retry_s = retry_s
        self.limit = limit
        self.key = key
        self.merge = merge
        self.dropped = 0
        """Rows lost because the store stayed down while more than `limit` came."""
        self._rows: dict[Hashable, T] = {}
        self._serial = itertools.count()
        self._wake = anyio.Event()
        self._failing = False

    def add(self, row: T) -> None:
        key = self.key(row) if self.key is not None else next(self._serial)
        old = self._rows.get(key)
        if old is not None and self.merge is not None:
            self._rows[key] = self.merge(old, row)
        else:
            if len(self._rows) >= self.limit:
                del self._rows[next(iter(self._rows))]
                self.dropped += 1
            self._rows[key] = row
        self._wake.set()

    async def flush(self) -> None:
        """Write what was booked; on failure keep it (before anything booked meanwhile)."""
        if not self._rows:
            return
        batch, self._rows = list(self._rows.values()), {}
        with anyio.CancelScope(shield=True):
            try:
                await self.write(batch)
            except Exception as exc:
                if not self._failing:
                    log.warning(f"{self.what} not written: kept for the next attempt", error=str(exc), rows=len(batch))
                self._failing = True
                booked, self._rows = self._rows, {}
                for row in batch:
                    self.add(row)
                for row in booked.values():
                    self.add(row)
                return
        if self._failing:
            log.info(f"{self.what} written again", rows=len(batch), dropped=self.dropped)
        self._failing = False

    async def run(self) -> None:
        """Write each row soon after it is booked, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()
            await anyio.sleep(self.retry_s if self._failing else self.every_s)
            if self._rows:  # booked meanwhile, or kept after a failed write
                self._wake.set()
