"""Rate limits and budgets: what a key or team may still spend, checked before each call.

Counters live behind `Counters` so several nodes can share a store later; `MemoryCounters`
serves one node (its counts start again at zero when the gateway restarts). The clock is
injected (`Quota(config, now=...)`) so windows and day or month boundaries can be tested.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Protocol

from ..config import GatewayConfig, Quotas
from ..errors import QuotaExceeded
from .identity import Identity


class Counters(Protocol):
    def wait(self, key: str, window_s: float, limit: int, now: float) -> float | None:
        """None if one more event fits `limit` per `window_s`, else seconds until it would."""

    def count(self, key: str, now: float) -> None:
        """Record one event at `now`."""

    def spent(self, key: str) -> float: ...
    def spend(self, key: str, amount: float) -> None: ...


class MemoryCounters:
    def __init__(self) -> None:
        self._events: dict[str, deque[float]] = {}
        self._spent: dict[str, float] = {}

    def wait(self, key: str, window_s: float, limit: int, now: float) -> float | None:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - window_s:
            events.popleft()
        return events[0] + window_s - now if len(events) >= limit else None

    def count(self, key: str, now: float) -> None:
        self._events.setdefault(key, deque()).append(now)

    def spent(self, key: str) -> float:
        return self._spent.get(key, 0.0)

    def spend(self, key: str, amount: float) -> None:
        self._spent[key] = self._spent.get(key, 0.0) + amount


class Quota:
    """Applies the config's quotas and prices to one call; `now` gives the time in seconds since the epoch."""

    def __init__(self, config: GatewayConfig, counters: Counters | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.counters = counters or MemoryCounters()
        self.now = now

    def _scopes(self, identity: Identity) -> list[tuple[str, str, Quotas]]:
        scopes: list[tuple[str, str, Quotas]] = []
        if identity.name in self.config.keys:
            scopes.append(("keys", identity.name, self.config.keys[identity.name]))
        if identity.team is not None and identity.team in self.config.teams:
            scopes.append(("teams", identity.team, self.config.teams[identity.team]))
        return scopes

    def check_rate(self, identity: Identity, kind: str) -> None:
        """`kind` is "calls" or "scripts"; raises with the limit's key and when to retry.

        Every limit the caller falls under is checked before any is counted, so a call refused by
        the team's limit does not use up the key's.
        """
        now = self.now()
        keys: list[str] = []
        for table, name, quotas in self._scopes(identity):
            limit = getattr(quotas, f"{kind}_per_minute")
            if limit is None:
                continue
            key = f"{table}.{name}.{kind}"
            wait = self.counters.wait(key, 60.0, limit, now)
            if wait is not None:
                raise QuotaExceeded(
                    f"rate limit: {table[:-1]} {name} allows {limit} {kind} per minute "
                    f"({table}.{name}.{kind}_per_minute); retry in {math.ceil(wait)} s"
                )
            keys.append(key)
        for key in keys:
            self.counters.count(key, now)

    def price(self, server: str, tool: str) -> float:
        ref = f"{server}.{tool}"
        return max((r.price for p, r in self.config.tools.items() if fnmatchcase(ref, p)), default=0.0)

    def charge(self, identity: Identity, amount: float) -> None:
        """Check every budget the call falls under, then book it (before the call: it may cost even if it fails)."""
        if amount <= 0:
            return
        now = datetime.fromtimestamp(self.now(), UTC)
        periods = {
            "day": (now.strftime("%Y-%m-%d"), _next_day(now)),
            "month": (now.strftime("%Y-%m"), _next_month(now)),
        }
        booked: list[str] = []
        for table, name, quotas in self._scopes(identity):
            for period, (stamp, resets) in periods.items():
                budget = getattr(quotas, f"budget_per_{period}")
                key = f"{table}.{name}.{stamp}"
                if budget is None:
                    continue
                if self.counters.spent(key) + amount > budget + 1e-12:
                    raise QuotaExceeded(
                        f"budget: {table[:-1]} {name} has spent {self.counters.spent(key):.4g} of its "
                        f"{_ADJECTIVE[period]} budget {budget:g} ({table}.{name}.budget_per_{period}); "
                        f"resets at {resets} UTC"
                    )
                booked.append(key)
        for key in booked:
            self.counters.spend(key, amount)


_ADJECTIVE = {"day": "daily", "month": "monthly"}


def _next_day(now: datetime) -> str:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return datetime.fromtimestamp(day.timestamp() + 86400, UTC).strftime("%Y-%m-%d %H:%M")


def _next_month(now: datetime) -> str:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}-01 00:00"
