"""Each upstream's state changes, booked as they happen and written to the store in batches.

The dashboard's upstreams page lists them per upstream, from every replica (`storage/events.py` says
why they are stored rather than kept in memory). An upstream's task calls `book` from its connection
loop, so booking must not wait or fail: events are written in batches (`batches.py`), soon after each
(at most every `FLUSH_S`), when the upstreams page is read and at shutdown; while the store cannot be
written, up to `MAX_PENDING` are kept (the oldest go first).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .batches import Batches
from .storage import Storage
from .storage.events import UpstreamEvent
from .upstream import Upstream

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
        self._events: Batches[UpstreamEvent] = Batches(
            "upstream history", lambda rows: self.storage.add_upstream_events(rows),  # the store as it is then
            every_s=FLUSH_S, retry_s=RETRY_S, limit=MAX_PENDING)

    @property
    def dropped(self) -> int:
        """Events lost because the store stayed down while more than `MAX_PENDING` came."""
        return self._events.dropped

    def book(self, up: Upstream, event: str, detail: str | None) -> None:
        """`Upstream.on_event`: one state change or scheduled reconnect of `up`, now."""
        if event == "ready":
            detail = f"{len(up.tools)} tool{'' if len(up.tools) == 1 else 's'}"
        self._events.add(UpstreamEvent(self.now(), up.name, self.replica, event,
                                       detail[:MAX_DETAIL_CHARS] if detail else None))

    async def flush(self) -> None:
        """Write what was booked; on failure keep it."""
        await self._events.flush()

    async def run(self) -> None:
        await self._events.run()
