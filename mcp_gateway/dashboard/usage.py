"""The usage page: calls per server over time, approvals, rate-limit and budget use, and Code Mode's savings.

Everything is read from the store, so every replica's calls and listings count: calls, errors,
latency and approvals from the audit rows (the same rows `mcp-gateway logs` shows), limits from
the counters enforcement books, savings from the rows `SavingsLedger` writes (this process's
pending counts are written first, so a listing a moment ago shows). Buckets are whole UTC hours
or days, the newest one still filling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..gateway import Gateway
from ..governance.quotas import RATE_WINDOW_S, Limit, configured_limits
from ..savings import day_of
from ..storage.base import STATS_ROWS
from ..storage.usage import ApprovalCount, Bucket, Saving
from .charts import Chart, Series, line_chart, meter, spark, stacked_bars

SPANS: dict[str, tuple[str, float, int, str]] = {
    "24h": ("last 24 hours, by hour", 3600, 24, "%H:00"),
    "14d": ("last 14 days, by day", 86400, 14, "%m-%d"),
}
"""Each span's title, bucket width in seconds, number of buckets and bucket label (UTC)."""
SAVINGS_DAYS = 14
DECISIONS = {"accept": ("accepted", "ok"), "decline": ("declined", "bad"), "cancel": ("cancelled", "warn"),
             "unsupported": ("client cannot ask", "muted"), "too_long": ("arguments too long to show", "muted"),
             "": ("refused, decision not recorded", "muted")}
"""The `approval` values an audit row may hold, as the page names and colours them."""


@dataclass(frozen=True)
class ServerUsage:
    server: str
    calls: int
    errors: int
    volume: Chart
    latency: Chart


@dataclass(frozen=True)
class KeySavings:
    key: str
    lists: int
    sent: int
    full: int
    daily: Chart

    @property
    def saved(self) -> int:
        return self.full - self.sent


@dataclass(frozen=True)
class LimitUse:
    limit: Limit
    used: float
    bar: Chart


@dataclass(frozen=True)
class UsagePage:
    span: str
    title: str
    servers: list[ServerUsage]
    unread: float | None
    approvals: Chart
    decisions: dict[str, int]
    savings: Chart
    keys: list[KeySavings]
    limits: list[LimitUse]
    refusals: list[tuple[str, int]]
    stats_rows: int = STATS_ROWS

    @property
    def asked(self) -> int:
        """Questions the user saw: answered, or cancelled (dismissed, or an unattended client's reply)."""
        return self.answered + self.decisions.get("cancel", 0)

    @property
    def answered(self) -> int:
        return self.decisions.get("accept", 0) + self.decisions.get("decline", 0)


async def usage(gw: Gateway, params: Mapping[str, str]) -> UsagePage:
    span = params.get("span", "24h")
    span = span if span in SPANS else "24h"
    title, width, count, fmt = SPANS[span]
    now = time.time()
    start = now - now % width - (count - 1) * width
    labels = [time.strftime(fmt, time.gmtime(start + i * width)) for i in range(count)]
    store = gw.storage
    buckets, unread = await store.usage_buckets(start, width)
    approvals, decisions = _approvals(await store.approval_counts(start, width), labels)
    refusals = await store.quota_refusals(start)
    await gw.token_savings.flush()
    first_day = day_of(now) - (SAVINGS_DAYS - 1) * 86400
    days = [time.strftime("%m-%d", time.gmtime(first_day + i * 86400)) for i in range(SAVINGS_DAYS)]
    saved = await store.savings(first_day)
    return UsagePage(span, title, _servers(gw, buckets, labels), unread, approvals, decisions,
                     _savings_chart(saved, first_day, days), _key_savings(saved, first_day, days),
                     await _limits(gw, now), sorted(refusals.items(), key=lambda kv: (-kv[1], kv[0])))


def _approvals(counts: list[ApprovalCount], labels: list[str]) -> tuple[Chart, dict[str, int]]:
    """The decisions stacked per bucket (known ones in `DECISIONS`'s order), and each one's total."""
    per_bucket: dict[str, list[float]] = {}
    for a in counts:
        if 0 <= a.index < len(labels):
            per_bucket.setdefault(a.decision, [0.0] * len(labels))[a.index] += a.count
    shown = [d for d in DECISIONS if d in per_bucket] + sorted(d for d in per_bucket if d not in DECISIONS)
    chart = stacked_bars("approvals", labels,
                         [Series(*DECISIONS.get(d, (d, "muted")), per_bucket[d]) for d in shown])
    return chart, {d: int(sum(per_bucket[d])) for d in shown}


async def _limits(gw: Gateway, now: float) -> list[LimitUse]:
    limits = configured_limits(gw.config, now)
    used = await gw.storage.counter_use([lim.counter for lim in limits if lim.rate], now - RATE_WINDOW_S,
                                        [lim.counter for lim in limits if not lim.rate])
    return [LimitUse(lim, used.get(lim.counter, 0.0),
                     meter(f"{lim.table}.{lim.name}.{lim.setting}", used.get(lim.counter, 0.0), lim.limit))
            for lim in limits]


def _servers(gw: Gateway, buckets: list[Bucket], labels: list[str]) -> list[ServerUsage]:
    """The configured upstreams in their order, then any other server the audit rows name."""
    count = len(labels)
    by_server: dict[str, list[Bucket]] = {u.name: [] for u in gw.upstreams}
    for b in sorted(buckets, key=lambda b: b.server):
        if 0 <= b.index < count:
            by_server.setdefault(b.server, []).append(b)
    found = []
    for server, rows in by_server.items():
        calls, errors = [0.0] * count, [0.0] * count
        p50, p95 = [math.nan] * count, [math.nan] * count
        for b in rows:
            calls[b.index], errors[b.index] = b.calls - b.errors, b.errors
            p50[b.index], p95[b.index] = b.p50_ms, b.p95_ms
        found.append(ServerUsage(
            server, sum(b.calls for b in rows), sum(b.errors for b in rows),
            stacked_bars(f"{server}: calls", labels, [Series("ok", "ok", calls), Series("errors", "bad", errors)]),
            line_chart(f"{server}: latency", labels, [Series("p50", "p50", p50), Series("p95", "p95", p95)],
                       " ms")))
    return found


def _savings_chart(rows: list[Saving], first_day: float, days: list[str]) -> Chart:
    sent, saved = [0.0] * len(days), [0.0] * len(days)
    for r in rows:
        i = round((r.day - first_day) / 86400)
        if 0 <= i < len(days):
            sent[i] += r.sent
            saved[i] += r.saved
    return stacked_bars("tokens per day", days, [Series("tokens sent (meta-tools)", "sent", sent),
                                                 Series("tokens saved", "saved", saved)])


def _key_savings(rows: list[Saving], first_day: float, days: list[str]) -> list[KeySavings]:
    totals: dict[str, list[int]] = {}
    daily: dict[str, list[float]] = {}
    for r in rows:
        t = totals.setdefault(r.key, [0, 0, 0])
        t[0], t[1], t[2] = t[0] + r.lists, t[1] + r.sent, t[2] + r.full
        per_day = daily.setdefault(r.key, [0.0] * len(days))
        i = round((r.day - first_day) / 86400)
        if 0 <= i < len(days):
            per_day[i] += r.saved
    found = [KeySavings(k, lists, sent, full, spark(f"{k}: tokens saved per day", days, daily[k], "saved"))
             for k, (lists, sent, full) in totals.items()]
    return sorted(found, key=lambda k: (-k.saved, k.key))
