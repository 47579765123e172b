"""What each page shows, read from the gateway and its store (no HTML here: `templates/` renders it).

The access page asks the same functions enforcement does: `identity_for` builds each key's, team's
and group's identity as `KeyRing` does, and `restrict` (through `Identity.allows`) gives the tools
it sees and may call, so the page cannot disagree with what a call would meet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from ..catalog import restrict
from ..gateway import Gateway
from ..governance.identity import Identity, identity_for
from ..storage.base import AuditEntry, AuditFilter, AuditRow, ServerStats
from ..storage.events import UpstreamEvent

WINDOWS: dict[str, float] = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400,
                             "30d": 30 * 86400}
"""The calls page's time windows (the newest rows within it); "" is every row."""
FILTERS = ("key", "team", "server", "tool", "outcome", "principal")
"""`key` is the name shown (a key's, a signed-in user's email: several callers may share one); `principal`
(`key:<name>`, `user:<sub>`) is one caller's rows only."""
HISTORY_ROWS = 20
"""State changes listed per upstream on the upstreams page (every replica's, newest first)."""
EVENTS = {"ready": "connected", "failed": "failed", "retrying": "reconnect scheduled", "stopped": "stopped",
          "disabled": "disabled"}
"""How the upstreams page names each recorded event (`Upstream.on_event`)."""
MAX_OPEN = 20
"""Rows still `started` that one live poll of the calls page may ask about again."""


@dataclass(frozen=True)
class UpstreamView:
    name: str
    transport: str
    mode: str
    state: str
    status: str
    error: str | None
    since: float
    failures: int
    tools: int
    hour: ServerStats | None
    day: ServerStats | None
    history: list[UpstreamEvent]


async def upstreams(gw: Gateway) -> list[UpstreamView]:
    """Each upstream as this process holds it, with its calls from the audit log and every replica's
    recent state changes (this process's own written first, so the page is never behind it)."""
    now = time.time()
    hour = {s.server: s for s in await gw.storage.server_stats(now - 3600)}
    day = {s.server: s for s in await gw.storage.server_stats(now - 86400)}
    await gw.upstream_history.flush()
    history: dict[str, list[UpstreamEvent]] = {}
    for event in await gw.storage.upstream_events([u.name for u in gw.upstreams], HISTORY_ROWS):
        history.setdefault(event.server, []).append(event)
    return [UpstreamView(u.name, u.config.kind, gw.config.mode_of(u.config), u.state, u.status, u.error, u.since,
                         u.failures, len(u.tools), hour.get(u.name), day.get(u.name), history.get(u.name, []))
            for u in gw.upstreams]


@dataclass(frozen=True)
class CallsPage:
    filters: dict[str, str]
    window: str
    rows: list[AuditEntry]
    children: dict[str, list[AuditEntry]]
    nested: bool
    older: int | None
    newer: int | None
    newest: int = 0
    """The live cursor: the highest id on the page (the newest row of all on an empty page)."""
    live: bool = False
    """Whether newer rows belong at the top of this page (the newest page: no `before` or `after`)."""
    done: list[AuditEntry] = field(default_factory=list)
    """Rows a live poll asked about again that are no longer `started`."""


def calls_filter(params: Mapping[str, str]) -> tuple[dict[str, str], str, AuditFilter]:
    """The filters a query string asks for (blank ones dropped), its window, and the store's filter.

    A script's calls are shown under the script's row, unless a server, tool or outcome filter asks
    for calls themselves: then every matching row is listed, nested or not."""
    filters = {f: params.get(f, "").strip() for f in FILTERS if params.get(f, "").strip()}
    window = params.get("window", "")
    window = window if window in WINDOWS else ""
    since = time.time() - WINDOWS[window] if window else None
    nested = not any(f in filters for f in ("server", "tool", "outcome"))
    where = AuditFilter(key=filters.get("key"), team=filters.get("team"), server=filters.get("server"),
                        tool=filters.get("tool"), outcome=filters.get("outcome"), since=since, top_level=nested,
                        principal=filters.get("principal"))
    return filters, window, where


async def calls(gw: Gateway, params: Mapping[str, str]) -> CallsPage:
    filters, window, where = calls_filter(params)
    size = gw.config.dashboard.page_rows
    after, before = _cursor(params.get("after")), _cursor(params.get("before"))
    newer = older = None
    if after is not None:
        got = await gw.storage.audit_page(where, after=after, limit=size + 1)
        rows = got[1:] if len(got) > size else got
        newer = rows[0].id if len(got) > size and rows else None
        older = rows[-1].id if rows else None
    else:
        got = await gw.storage.audit_page(where, before=before, limit=size + 1)
        rows = got[:size]
        older = rows[-1].id if len(got) > size else None
        newer = rows[0].id if before is not None and rows else None
    live = after is None and before is None
    newest = rows[0].id if rows else await _newest(gw) if live else 0
    return CallsPage(filters, window, rows, await _children(gw, where, rows), where.top_level, older, newer,
                     newest, live)


async def calls_since(gw: Gateway, params: Mapping[str, str]) -> CallsPage | None:
    """For a live calls page: its filters' rows above `after` (the oldest page of them, newest first, so
    polls catch up in order without a gap), and the rows listed in `open` (at most `MAX_OPEN` ids the
    page shows as `started`) that have finished since. None without a valid `after`.

    Ids are the cursor, as for the pages: on PostgreSQL a row another replica commits a moment after a
    newer id was read can be passed over by a poll; it shows on the next load of the page."""
    after = _cursor(params.get("after"))
    if after is None:
        return None
    filters, window, where = calls_filter(params)
    rows = await gw.storage.audit_page(where, after=after, limit=gw.config.dashboard.page_rows)
    done = []
    for row_id in [c for c in map(_cursor, params.get("open", "").split(",")[:MAX_OPEN]) if c]:
        found = await gw.storage.audit_page(AuditFilter(), after=row_id - 1, limit=1)  # the row itself, by key
        if found and found[0].id == row_id and found[0].row.outcome != "started":
            done.append(found[0])
    return CallsPage(filters, window, rows, await _children(gw, where, rows), where.top_level, None, None,
                     rows[0].id if rows else after, True, done)


async def _children(gw: Gateway, where: AuditFilter, rows: list[AuditEntry]) -> dict[str, list[AuditEntry]]:
    """The calls each script on the page made, by execution id (when they are listed under it)."""
    children: dict[str, list[AuditEntry]] = {}
    if where.top_level:
        scripts = [e.row.execution_id for e in rows if e.row.kind == "meta" and e.row.execution_id]
        for child in await gw.storage.audit_of_executions(scripts):
            children.setdefault(child.row.execution_id or "", []).append(child)
    return children


async def _newest(gw: Gateway) -> int:
    """The newest row's id, so a live page with no row yet asks only for rows that come after it."""
    found = await gw.storage.audit_page(AuditFilter(), limit=1)
    return found[0].id if found else 0


def script_source(row: AuditRow) -> str | None:
    """A script row's source as its arguments stored it (redacted; cut arguments are no JSON: shown as stored)."""
    if row.kind != "meta" or row.tool != "executeToolCode" or not row.arguments:
        return None
    try:
        code = json.loads(row.arguments).get("code")
    except (ValueError, AttributeError):
        return row.arguments
    return code if isinstance(code, str) else row.arguments


def _cursor(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) < 19 else None


@dataclass(frozen=True)
class Subject:
    """A key, team or group, with the identity enforcement would give it."""

    id: str
    kind: str  # "config key", "stored key", "team" or "group"
    name: str
    identity: Identity
    team: str | None = None
    groups: tuple[str, ...] = ()
    admin: bool = False
    revoked: bool = False


@dataclass(frozen=True)
class ToolAccess:
    server: str
    tool: str
    mode: str
    allowed: bool
    why: str


@dataclass(frozen=True)
class AccessView:
    subject: Subject
    tools: list[ToolAccess] = field(default_factory=list)

    @property
    def allowed(self) -> int:
        return sum(t.allowed for t in self.tools)


async def subjects(gw: Gateway) -> list[Subject]:
    config = gw.config
    found = [Subject(f"key:{n}", "config key", n, identity_for(config, n, k.team, k.groups, k.remove_groups, k.deny,
                                                               k.admin), k.team, tuple(k.groups), k.admin)
             for n, k in config.keys.items()]
    for row in await gw.storage.list_keys():
        identity = Identity(row.name) if row.revoked else identity_for(config, row.name, row.team, row.groups,
                                                                       admin=row.admin)
        found.append(Subject(f"stored:{row.name}", "stored key", row.name, identity, row.team, row.groups, row.admin,
                             row.revoked is not None))
    found += [Subject(f"team:{t}", "team", t, identity_for(config, t, t, []), t, tuple(team.groups))
              for t, team in config.teams.items()]
    found += [Subject(f"group:{g}", "group", g, identity_for(config, g, None, [g]), None, (g,)) for g in config.groups]
    return found


def access(gw: Gateway, subject: Subject) -> AccessView:
    """Every tool of the ready upstreams, allowed or not for `subject`, and why (allowed: `restrict` says so)."""
    full = gw.full_catalog
    visible = {(e.server, e.tool.name) for e in restrict(full, subject.identity, gw.config.gateway.layout).entries}
    modes = {u.name: gw.config.mode_of(u.config) for u in gw.upstreams}
    tools = []
    for e in full.entries:
        allowed = (e.server, e.tool.name) in visible
        why = "revoked" if subject.revoked else _why(subject.identity, e.server, e.tool.name, e.spec.identifier,
                                                     allowed)
        tools.append(ToolAccess(e.server, e.tool.name, modes.get(e.server, ""), allowed, why))
    return AccessView(subject, tools)


def _why(identity: Identity, server: str, tool: str, alias: str, allowed: bool) -> str:
    """The pattern that lets the tool through, or the rule that hides it (an explanation: `allowed` decides)."""
    refs = [f"{server}.{tool}", f"{server}.{alias}"]

    def first(patterns: Sequence[str]) -> str | None:
        return next((p for p in patterns if any(fnmatchcase(r, p) for r in refs)), None)

    if allowed:
        return f"allowed by {first(identity.allow)}"
    denied = first(identity.deny)
    if denied is not None:
        return f"denied by {denied}"
    if identity.endpoint is not None and first(identity.endpoint) is None:
        return f"outside the group endpoint {identity.group}"
    return "no group allows it" if not identity.allow else "no allow pattern matches"
