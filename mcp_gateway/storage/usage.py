"""What the dashboard's usage page reads from the store, and Code Mode's token savings it books.

Each query is one SQL text for both backends (each spells its placeholders, `mark(n)`, and its
cast of a bucket to a whole number, `whole(expr)`), so SQLite and PostgreSQL count alike. Buckets
are `width` seconds from a `since` the caller aligns to UTC hours or days; latency percentiles are
nearest-rank, as on the upstreams page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

Mark = Callable[[int], str]
Whole = Callable[[str], str]


@dataclass(frozen=True)
class Bucket:
    """One upstream's finished calls in one time bucket (`index` counts buckets from the window's start)."""

    server: str
    index: int
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class ApprovalCount:
    """Calls that needed the user's approval in one time bucket, by the `approval` their audit row records
    (accept, decline, cancel, unsupported, too_long; "" for a refusal whose decision was not recorded)."""

    index: int
    decision: str
    count: int


@dataclass(frozen=True)
class Saving:
    """Code Mode's `tools/list` answers to one key on one UTC day: how many, the tokens of the definitions
    sent (the meta-tools), and the tokens of the code-mode tools' definitions the key would have been sent."""

    day: float  # the day's UTC midnight, in seconds since the epoch
    key: str
    lists: int
    sent: int
    full: int

    @property
    def saved(self) -> int:
        return self.full - self.sent


SAVINGS_COLUMNS = "day, key, lists, sent_tokens, full_tokens"


def buckets_sql(mark: Mark, whole: Whole) -> str:
    """Per server and bucket: parameters are the window's start, the bucket width and the newest rows to read.

    Rows are (server, bucket, n, errors, rank, latency, rank of p50, rank of p95), one per percentile. The
    server test is an expression and the partitions start with the bucket, so no plan walks the server
    index (every row) for its order: the window's start (`audit_ts`) or the newest ids bound what is read."""
    return f"""
        SELECT server, b, n, errors, rn, latency_ms, (n + 1) / 2 AS r50, (95 * n + 99) / 100 AS r95 FROM (
            SELECT server, b, latency_ms,
                   ROW_NUMBER() OVER (PARTITION BY b, server ORDER BY latency_ms) AS rn,
                   COUNT(*) OVER (PARTITION BY b, server) AS n,
                   SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END) OVER (PARTITION BY b, server) AS errors
            FROM (SELECT server, latency_ms, outcome, {whole(f"(ts - {mark(1)}) / {mark(2)}")} AS b FROM audit
                  WHERE ts >= {mark(1)} AND COALESCE(server, '') <> '' AND outcome <> 'started'
                    AND id > (SELECT COALESCE(MAX(id), 0) FROM audit) - {mark(3)}) AS recent
        ) AS ranked
        WHERE rn = (n + 1) / 2 OR rn = (95 * n + 99) / 100
        ORDER BY server, b"""


def unread_sql(mark: Mark) -> str:
    """The time of the newest row a query bounded to the newest `mark(1)` rows leaves out (no row: none is)."""
    return (f"SELECT ts FROM audit WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM audit) - {mark(1)} "
            "ORDER BY id DESC LIMIT 1")


def collect_buckets(rows: Iterable[Sequence[Any]]) -> list[Bucket]:
    """`buckets_sql`'s rows as one `Bucket` per server and bucket."""
    found: dict[tuple[str, int], Bucket] = {}
    for server, index, n, errors, rn, latency, r50, r95 in rows:
        at = (str(server), int(index))
        old = found.get(at) or Bucket(at[0], at[1], int(n), int(errors), 0.0, 0.0)
        found[at] = replace(old, p50_ms=float(latency) if rn == r50 else old.p50_ms,
                            p95_ms=float(latency) if rn == r95 else old.p95_ms)
    return list(found.values())


def approvals_sql(mark: Mark, whole: Whole) -> str:
    """Per bucket and decision: parameters are the window's start and the bucket width (the WHERE is
    the partial index `audit_approval_ts`'s, so only those rows are read)."""
    return f"""
        SELECT {whole(f"(ts - {mark(1)}) / {mark(2)}")} AS b, COALESCE(approval, '') AS decision, COUNT(*) AS n
        FROM audit WHERE ts >= {mark(1)} AND (approval IS NOT NULL OR outcome = 'ApprovalRefused')
        GROUP BY 1, 2 ORDER BY 1, 2"""


def refusals_sql(mark: Mark) -> str:
    """Calls refused by a rate limit or budget, per key, since `mark(1)`."""
    return f"SELECT key, COUNT(*) FROM audit WHERE outcome = 'QuotaExceeded' AND ts >= {mark(1)} GROUP BY key"


def book_savings_sql(mark: Mark) -> str:
    """Add one batch row to its key's day (every replica adds to the same row)."""
    return (f"INSERT INTO token_savings ({SAVINGS_COLUMNS}) VALUES ({', '.join(mark(i) for i in range(1, 6))}) "
            "ON CONFLICT (day, key) DO UPDATE SET lists = token_savings.lists + excluded.lists, "
            "sent_tokens = token_savings.sent_tokens + excluded.sent_tokens, "
            "full_tokens = token_savings.full_tokens + excluded.full_tokens")


def savings_sql(mark: Mark) -> str:
    return f"SELECT {SAVINGS_COLUMNS} FROM token_savings WHERE day >= {mark(1)} ORDER BY day, key"


def savings_rows(rows: Sequence[Saving]) -> list[tuple[float, str, int, int, int]]:
    """A batch as parameters, in the primary key's order (so two replicas' batches lock rows alike)."""
    return sorted((s.day, s.key, s.lists, s.sent, s.full) for s in rows)
