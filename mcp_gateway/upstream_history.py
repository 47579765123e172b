"""Each upstream's state changes, booked as they happen and written to the store in batches.

The dashboard's upstreams page lists them per upstream, from every replica (`storage/events.py` says
why they are stored rather than kept in memory). An upstream's task calls `book` from its connection
loop, so booking is an append to a bounded buffer and nothing more: no store round trip, no await, no
exception. A writer task flushes the buffer soon after each event (at most every `FLUSH_S`), when
the upstreams page is read, and at shutdown. A store that cannot be written is logged once per outage
and the events are kept for the next attempt, up to `MAX_PENDING` (the oldest go first): this is a
report, so an upstream never waits or fails for it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio
import structlog

from .storage import Storage
from .storage.events import UpstreamEvent
from .upstream import Upstream

log = structlog.get_logger("mcp_gateway.upstream_history")

FLUSH_S = 1.0
"""Shortest time between two batch writes (a reconnect burst is one write)."""
RETRY_S = 10.0
"""After a failed write, the wait before the next attempt."""
MAX_PENDING = 2000
"""Events kept while the store cannot be written; beyond it the oldest are dropped (and counted)."""
MAX_DETAIL_CHARS = 1000
"""Characters of a failure's reason kept per event (the upstreams page shows the current one in full)."""


class UpstreamHistory:
    def __init__(self, storage: Storage, replica: str | None, now: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.replica = replica
        self.now = now
        self.dropped = 0
        """Events lost because the store stayed down while more than `MAX_PENDING` came."""
        self._pending: deque[UpstreamEvent] = deque()
        self._wake = anyio.Event()
        self._failing = False

    def book(self, up: Upstream, event: str, detail: str | None) -> None:
        """`Upstream.on_event`: one state change or scheduled reconnect of `up`, now."""
        if event == "ready":
            detail = f"{len(up.tools)} tool{'' if len(up.tools) == 1 else 's'}"
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(UpstreamEvent(self.now(), up.name, self.replica, event,
                                           detail[:MAX_DETAIL_CHARS] if detail else None))
        self._wake.set()

    async def flush(self) -> None:
        """Write what was booked; on failure keep it (in order, before anything booked meanwhile)."""
        if not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        with anyio.CancelScope(shield=True):
            try:
                await self.storage.add_upstream_events(batch)
            except Exception as exc:
                if not self._failing:
                    log.warning("upstream history not written: kept for the next attempt", error=str(exc),
                                events=len(batch))
                self._failing = True
                kept = batch + list(self._pending)
                self.dropped += max(0, len(kept) - MAX_PENDING)
                self._pending = deque(kept[-MAX_PENDING:])
                return
        if self._failing:
            log.info("upstream history written again", events=len(batch), dropped=self.dropped)
        self._failing = False

    async def run(self) -> None:
        """Write each event soon after it is booked, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()
            await anyio.sleep(RETRY_S if self._failing else FLUSH_S)
            if self._pending:  # booked meanwhile, or kept after a failed write
                self._wake.set()
