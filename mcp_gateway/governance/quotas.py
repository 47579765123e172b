"""Rate limits and budgets: what a key or team may still spend, checked before each call.

The counts live in the store (`Counters`: SQLite on one node, PostgreSQL across replicas), so
they survive a restart and a limit of N is N across every replica. Every limit a call falls under
is checked and booked in one atomic step. A store that cannot answer refuses the call. The clock
is injected (`Quota(config, counters, now=...)`) so windows and day or month boundaries can be tested.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from ..config import GatewayConfig, Quotas
from ..errors import QuotaExceeded, StoreUnavailable
from ..storage import Budget, Counters, StorageUnavailable, Window
from .identity import Identity


class Quota:
    """Applies the config's quotas and prices to one call; `now` gives the time in seconds since the epoch."""

    def __init__(self, config: GatewayConfig, counters: Counters, now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.counters = counters
        self.now = now

    def _scopes(self, identity: Identity) -> list[tuple[str, str, Quotas]]:
        scopes: list[tuple[str, str, Quotas]] = []
        if identity.subject is not None:  # a signed-in user: `[sign_in]`'s per-user limits, never a key's
            if self.config.sign_in is not None:
                scopes.append(("users", identity.subject, self.config.sign_in))
        elif identity.name in self.config.keys:
            scopes.append(("keys", identity.name, self.config.keys[identity.name]))
        if identity.team is not None and identity.team in self.config.teams:
            scopes.append(("teams", identity.team, self.config.teams[identity.team]))
        return scopes

    async def check_rate(self, identity: Identity, kind: str) -> None:
        """`kind` is "calls", "scripts" or "meta_calls"; raises with the limit's key and when to retry.

        Every limit the caller falls under is checked before any is counted, so a call refused by
        the team's limit does not use up the key's.
        """
        scopes = {Window(rate_counter(table, name, kind), limit, RATE_WINDOW_S): (table, name)
                  for table, name, quotas in self._scopes(identity)
                  if (limit := getattr(quotas, f"{kind}_per_minute")) is not None}
        if not scopes:
            return
        try:
            full = await self.counters.take(list(scopes), self.now())
        except StorageUnavailable as exc:
            raise StoreUnavailable(f"the {kind} rate limit", str(exc)) from None
        if full is not None:
            window, wait = full
            table, name = scopes[window]
            raise QuotaExceeded(
                f"rate limit: {table[:-1]} {name} allows {window.limit} {kind} per minute "
                f"({table}.{name}.{kind}_per_minute); retry in {max(1, math.ceil(wait))} s"
            )

    def price(self, server: str, tool: str) -> float:
        ref = f"{server}.{tool}"
        return max((r.price for p, r in self.config.tools.items() if fnmatchcase(ref, p)), default=0.0)

    async def charge(self, identity: Identity, amount: float) -> None:
        """Check every budget the call falls under, then book it (before the call: it may cost even if it fails)."""
        if amount <= 0:
            return
        scopes = {Budget(budget_counter(table, name, stamp), budget): (table, name, period, resets)
                  for table, name, quotas in self._scopes(identity)
                  for period, (stamp, resets) in periods(self.now()).items()
                  if (budget := getattr(quotas, f"budget_per_{period}")) is not None}
        if not scopes:
            return
        try:
            over = await self.counters.charge(list(scopes), amount)
        except StorageUnavailable as exc:
            raise StoreUnavailable("the budget", str(exc)) from None
        if over is not None:
            budget, spent = over
            table, name, period, resets = scopes[budget]
            raise QuotaExceeded(
                f"budget: {table[:-1]} {name} has spent {spent:.4g} of its {_ADJECTIVE[period]} budget "
                f"{budget.budget:g} ({table}.{name}.budget_per_{period}); resets at {resets} UTC"
            )


_ADJECTIVE = {"day": "daily", "month": "monthly"}
RATE_KINDS = ("calls", "scripts", "meta_calls")
RATE_WINDOW_S = 60.0


def rate_counter(table: str, name: str, kind: str) -> str:
    """The store's rate-limit key of a key's or team's `kind` ("keys.alice.calls")."""
    return f"{table}.{name}.{kind}"


def budget_counter(table: str, name: str, stamp: str) -> str:
    """The store's budget key of a key's or team's day or month ("keys.alice.2026-12-05")."""
    return f"{table}.{name}.{stamp}"


def periods(ts: float) -> dict[str, tuple[str, str]]:
    """The budget periods `ts` falls in: their stamps in budget keys, and when each resets (UTC)."""
    now = datetime.fromtimestamp(ts, UTC)
    return {"day": (now.strftime("%Y-%m-%d"), _next_day(now)), "month": (now.strftime("%Y-%m"), _next_month(now))}


@dataclass(frozen=True)
class Limit:
    """A configured rate limit or budget of a key or team, and the store counter it is booked under now."""

    table: str  # "keys" or "teams"
    name: str
    setting: str  # as in the config: "calls_per_minute", "budget_per_day"...
    limit: float
    counter: str
    rate: bool  # a per-minute window; else a budget of the current day or month


def configured_limits(config: GatewayConfig, ts: float) -> list[Limit]:
    """Every rate limit and budget the config sets, with the counters of the minute, day and month of `ts`."""
    found: list[Limit] = []
    scopes = [("keys", n, q) for n, q in config.keys.items()] + [("teams", n, q) for n, q in config.teams.items()]
    stamps = periods(ts)
    for table, name, quotas in scopes:
        for kind in RATE_KINDS:
            if (limit := getattr(quotas, f"{kind}_per_minute")) is not None:
                found.append(Limit(table, name, f"{kind}_per_minute", limit, rate_counter(table, name, kind), True))
        for period, (stamp, _) in stamps.items():
            if (budget := getattr(quotas, f"budget_per_{period}")) is not None:
                found.append(Limit(table, name, f"budget_per_{period}", budget, budget_counter(table, name, stamp),
                                   False))
    return found


def _next_day(now: datetime) -> str:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return datetime.fromtimestamp(day.timestamp() + 86400, UTC).strftime("%Y-%m-%d %H:%M")


def _next_month(now: datetime) -> str:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}-01 00:00"
