"""The interface of durable state (keys, audit rows, budgets, rate-limit windows) and its records.

One implementation per backend (`sqlite.py`, `postgres.py`); every method is async, so no backend
ever blocks the event loop. A backend that cannot answer raises `StorageUnavailable`, and every
caller treats that as "no": no key is accepted, no call is made unaudited, no limit is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .events import EventRecords
from .oauth import OAuthRecords
from .usage import ApprovalCount, Bucket, Saving


@dataclass(frozen=True)
class StoredKey:
    name: str
    hash: str
    team: str | None
    groups: tuple[str, ...]
    created: float
    revoked: float | None = None
    admin: bool = False


@dataclass
class AuditRow:
    """One call: of an upstream tool, a meta-tool, a resource or a prompt.

    A tool call is written as `outcome = "started"` before the upstream runs it and updated with
    its outcome after, so a crash in between leaves a row saying the call may have run.
    """

    key: str
    team: str | None
    endpoint: str
    kind: str  # "tool" (an upstream call), "meta" (a meta-tool), "resource" or "prompt"
    server: str | None
    tool: str
    outcome: str
    latency_ms: float
    arg_bytes: int = 0
    result_bytes: int = 0
    error: str | None = None
    arguments: str | None = None
    execution_id: str | None = None
    approval: str | None = None
    ts: float = field(default_factory=time.time)
    replica: str | None = None
    result: str | None = None
    """What a script returned (its printed output, value and error), only with `audit_arguments`."""
    principal: str | None = None
    """Who called, unambiguously (`Identity.principal`: `key:<name>` or `user:<sub>`); `key` is only the name
    shown, which a signed-in user's email may share with an API key. None on rows written before it was kept."""


AUDIT_COLUMNS = tuple(AuditRow.__dataclass_fields__)
"""The audit table's columns, in `AuditRow`'s order (every backend)."""
KEY_COLUMNS = "name, hash, team, groups, created, revoked, admin"
SESSION_COLUMNS = "id, owner, protocol_version, client, created"


@dataclass(frozen=True)
class SharedSession:
    """A 2025-11-25 HTTP session as any replica needs it to continue: whose it is (the caller and
    endpoint that opened it, as JSON), the protocol version negotiated, and the client's
    `initialize` params (JSON)."""

    id: str
    owner: str
    protocol_version: str
    client: str
    created: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Window:
    """A rate limit: at most `limit` events in any `seconds`, counted under `key`."""

    key: str
    limit: int
    seconds: float


@dataclass(frozen=True)
class Budget:
    """At most `budget` spent under `key` (one key per period, such as `keys.alice.2026-12-05`)."""

    key: str
    budget: float


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows a dashboard page reads; unset fields match every row.

    `top_level` leaves out the calls scripts made (rows with an `execution_id` other than the
    script's own `meta` row), which are read with `audit_of_executions` and shown under their script.
    """

    key: str | None = None
    team: str | None = None
    server: str | None = None
    tool: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    top_level: bool = False
    principal: str | None = None
    """One caller's rows (`key:<name>`, `user:<sub>`), where `key` matches every caller shown by that name."""

    def sql(self, mark: Callable[[int], str]) -> tuple[list[str], list[object]]:
        """The WHERE clauses (ANDed) and their parameters; `mark(n)` spells the n-th placeholder (from 1)."""
        clauses: list[str] = []
        params: list[object] = []
        for clause, value in (("key = {}", self.key), ("team = {}", self.team), ("server = {}", self.server),
                              ("tool = {}", self.tool), ("outcome = {}", self.outcome), ("ts >= {}", self.since),
                              ("ts < {}", self.until), ("principal = {}", self.principal)):
            if value is not None:
                params.append(value)
                clauses.append(clause.format(mark(len(params))))
        if self.top_level:
            clauses.append("(execution_id IS NULL OR kind = 'meta')")
        return clauses, params


@dataclass(frozen=True)
class AuditEntry:
    """An audit row with its id (the keyset pagination cursor, newest highest)."""

    id: int
    row: AuditRow


@dataclass(frozen=True)
class ServerStats:
    """One upstream's finished calls in a time window: count, errors (outcome not `ok`), latency percentiles
    (nearest rank, in ms)."""

    server: str
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float


STATS_ROWS = 200_000
"""`server_stats` reads at most this many of the newest audit rows, so a page stays fast on any log."""


def stats_sql(mark: Callable[[int], str]) -> str:
    """`server_stats` in SQL both backends run: parameters are the window's start and `STATS_ROWS`."""
    return f"""
        SELECT server, n, errors, rn, latency_ms, (n + 1) / 2 AS r50, (95 * n + 99) / 100 AS r95 FROM (
            SELECT server, latency_ms,
                   ROW_NUMBER() OVER (PARTITION BY server ORDER BY latency_ms) AS rn,
                   COUNT(*) OVER (PARTITION BY server) AS n,
                   SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END) OVER (PARTITION BY server) AS errors
            FROM audit
            WHERE ts >= {mark(1)} AND server IS NOT NULL AND server <> '' AND outcome <> 'started'
              AND id > (SELECT COALESCE(MAX(id), 0) FROM audit) - {mark(2)}
        ) AS ranked
        WHERE rn = (n + 1) / 2 OR rn = (95 * n + 99) / 100
        ORDER BY server"""


def collect_stats(rows: Iterable[Sequence[Any]]) -> list[ServerStats]:
    """`stats_sql`'s rows (server, n, errors, rn, latency, r50, r95) as one `ServerStats` per server."""
    found: dict[str, ServerStats] = {}
    for server, n, errors, rn, latency, r50, r95 in rows:
        old = found.get(server) or ServerStats(str(server), int(n), int(errors), 0.0, 0.0)
        found[server] = replace(old, p50_ms=float(latency) if rn == r50 else old.p50_ms,
                                p95_ms=float(latency) if rn == r95 else old.p95_ms)
    return list(found.values())


class Counters(Protocol):
    """Rate-limit windows and budgets, checked and booked in one atomic step (exact across replicas)."""

    async def take(self, windows: Sequence[Window], now: float) -> tuple[Window, float] | None:
        """Count one event at `now` in every window if each has room and return None; otherwise
        count nothing and return the first full window with the seconds until it has room."""
        ...

    async def charge(self, budgets: Sequence[Budget], amount: float) -> tuple[Budget, float] | None:
        """Add `amount` to every budget if each stays within it and return None; otherwise add
        nothing and return the first budget it would exceed with what that budget has spent."""
        ...


class Storage(Counters, OAuthRecords, EventRecords, Protocol):
    name: str
    """The backend and where it is, without credentials (for logs and `/healthz`)."""

    async def migrate(self) -> list[str]:
        """Bring the schema up to date; returns the migrations applied now (none if it already was)."""
        ...

    async def add_key(self, key: StoredKey) -> None: ...
    async def revoke_key(self, name: str) -> bool: ...
    async def list_keys(self) -> list[StoredKey]: ...
    async def find_key(self, key_hash: str) -> StoredKey | None:
        """The active key with this hash."""
        ...

    async def is_revoked(self, name: str) -> bool:
        """Whether the stored key `name` has been revoked (false for names never stored)."""
        ...

    async def has_keys(self) -> bool:
        """Whether any key was ever stored, revoked ones included."""
        ...

    async def write_audit(self, row: AuditRow) -> int:
        """Commit a new row; returns its id."""
        ...

    async def finish_audit(self, row_id: int, row: AuditRow) -> None:
        """Replace what an earlier `write_audit` stored under `row_id` with `row` (the call's outcome)."""
        ...

    async def prune(self, before: float, counters_before: float) -> int:
        """Delete audit rows older than `before` (and token savings of days before it), and budgets
        untouched and sessions opened before `counters_before` (seconds since the epoch), and upstream
        events older than either; returns how many audit rows."""
        ...

    async def query_audit(self, *, key: str | None = None, tool: str | None = None, since: float | None = None,
                          limit: int = 1000) -> list[AuditRow]: ...
    async def audit_page(self, where: AuditFilter, *, before: int | None = None, after: int | None = None,
                         limit: int = 50) -> list[AuditEntry]:
        """Rows matching `where`, newest first: the `limit` newest with ids below `before`, or, with
        `after`, the `limit` oldest with ids above it (keyset pagination; never OFFSET)."""
        ...

    async def audit_of_executions(self, execution_ids: Sequence[str], limit: int = 2000) -> list[AuditEntry]:
        """The calls the scripts `execution_ids` made (not their own `meta` rows), oldest first, at most `limit`."""
        ...

    async def server_stats(self, since: float) -> list[ServerStats]:
        """Per upstream, its finished calls since `since` (among the newest `STATS_ROWS` rows), by server name."""
        ...

    async def usage_buckets(self, since: float, width: float) -> tuple[list[Bucket], float | None]:
        """Per upstream and per `width` seconds from `since`, its finished calls among the newest `STATS_ROWS`
        rows; and the time of the newest row that bound left out, if it is in the window (else None)."""
        ...

    async def approval_counts(self, since: float, width: float) -> list[ApprovalCount]:
        """Calls that needed approval, per `width` seconds from `since` and recorded decision."""
        ...

    async def quota_refusals(self, since: float) -> dict[str, int]:
        """Per key, its calls refused by a rate limit or budget since `since`."""
        ...

    async def counter_use(self, rate_keys: Sequence[str], since: float, budget_keys: Sequence[str]) -> dict[str, float]:
        """Events after `since` under each rate-limit key, and what each budget key has spent (absent: none)."""
        ...

    async def book_savings(self, rows: Sequence[Saving]) -> None:
        """Add each row's counts to its key's day."""
        ...

    async def savings(self, since: float) -> list[Saving]:
        """Every key's savings rows of the days from `since` (a UTC midnight), by day and key."""
        ...

    async def save_session(self, session: SharedSession) -> None: ...
    async def find_session(self, session_id: str) -> SharedSession | None: ...
    async def drop_session(self, session_id: str) -> None: ...
    async def put_state(self, key: str, owner: str, body: str, expires: float) -> None:
        """Keep `body` under `key` for `owner` until `expires` (seconds since the epoch)."""
        ...

    async def get_state(self, key: str, owner: str) -> str | None:
        """The body kept under `key` for `owner`, if it has not expired (another owner's: None)."""
        ...

    async def take_state(self, key: str, owner: str) -> str | None:
        """`get_state` and forget it, in one step: of two takers at once (on any replicas) one gets the body."""
        ...

    async def publish(self, message: str) -> None:
        """Send `message` to every process's `listen` on this store (none but this one on SQLite)."""
        ...

    async def listen(self, deliver: Callable[[str], Awaitable[None]]) -> None:
        """Call `deliver` with each message published by any process, until cancelled (reconnecting
        after a lost connection)."""
        ...

    @property
    def listening(self) -> bool:
        """Whether a message published now reaches this process's `listen`."""
        ...

    async def close(self) -> None: ...
