"""Code Mode's token savings per key and day, for the dashboard's usage page.

A Code Mode `tools/list` sends the meta-tools' definitions instead of the definitions of every
code-mode tool the caller may see; each listing books both token counts under its key and UTC day.
Booking is a dictionary update (no store round trip on the listing's path); the ledger writes its
counts to the store in one batch every `FLUSH_S` seconds, when a usage page is read, and at
shutdown. A store that cannot be written is logged and the counts are kept for the next attempt:
savings are a report, so a listing never fails or waits for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import structlog

from .storage import Storage
from .storage.usage import Saving

log = structlog.get_logger("mcp_gateway.savings")

FLUSH_S = 10.0
"""Seconds between batch writes (a replica that dies loses at most this long of savings counts)."""


def day_of(ts: float) -> float:
    """The UTC midnight starting the day of `ts`, in seconds since the epoch."""
    return ts - ts % 86400


class SavingsLedger:
    def __init__(self, storage: Storage, now: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.now = now
        self._pending: dict[tuple[float, str], Saving] = {}

    def book(self, key: str, sent: int, full: int) -> None:
        """One listing to `key`: `sent` tokens of definitions sent, `full` those its catalog would cost."""
        self._add(Saving(day_of(self.now()), key, 1, sent, full))

    async def flush(self) -> None:
        """Write what was booked since the last flush; kept for the next one if the store fails."""
        batch, self._pending = list(self._pending.values()), {}
        if not batch:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self.storage.book_savings(batch)
            except Exception as exc:
                log.warning("token savings not written: kept for the next attempt", error=str(exc), rows=len(batch))
                for row in batch:
                    self._add(row)

    async def run(self) -> None:
        """Flush every `FLUSH_S` seconds, until cancelled."""
        while True:
            await anyio.sleep(FLUSH_S)
            await self.flush()

    def _add(self, row: Saving) -> None:
        old = self._pending.get((row.day, row.key))
        self._pending[(row.day, row.key)] = row if old is None else Saving(
            row.day, row.key, old.lists + row.lists, old.sent + row.sent, old.full + row.full)
