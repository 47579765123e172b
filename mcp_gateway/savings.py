"""Code Mode's token savings per key and day, for the dashboard's usage page.

A Code Mode `tools/list` sends the meta-tools' definitions instead of the definitions of every
code-mode tool the caller may see; each listing books both token counts under its key and UTC day.
Booking is a dictionary update (no store round trip on the listing's path); the ledger writes its
counts to the store in batches (`batches.py`): at most every `FLUSH_S` seconds, when a usage page is
read, and at shutdown; a store that cannot be written delays them, never a listing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .batches import Batches
from .storage import Storage
from .storage.usage import Saving

FLUSH_S = 10.0
"""Seconds between batch writes (a replica that dies loses at most this long of savings counts)."""


def day_of(ts: float) -> float:
    """The UTC midnight starting the day of `ts`, in seconds since the epoch."""
    return ts - ts % 86400


class SavingsLedger:
    def __init__(self, storage: Storage, now: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.now = now
        self._rows: Batches[Saving] = Batches(
            "token savings", lambda rows: self.storage.book_savings(rows),  # the store as it is then
            every_s=FLUSH_S, retry_s=FLUSH_S, limit=100_000, key=lambda r: (r.day, r.key), merge=_summed)

    def book(self, key: str, sent: int, full: int) -> None:
        """One listing to `key`: `sent` tokens of definitions sent, `full` those its catalog would cost."""
        self._rows.add(Saving(day_of(self.now()), key, 1, sent, full))

    async def flush(self) -> None:
        """Write what was booked since the last flush; kept for the next one if the store fails."""
        await self._rows.flush()

    async def run(self) -> None:
        await self._rows.run()


def _summed(old: Saving, new: Saving) -> Saving:
    return Saving(old.day, old.key, old.lists + new.lists, old.sent + new.sent, old.full + new.full)
