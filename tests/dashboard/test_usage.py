"""The usage page and the store queries behind it, on both backends: calls, errors and latency per
server and time bucket, approvals by recorded decision, rate-limit and budget use against the
configured limits, and Code Mode's token savings booked per key and day (in batches that a store
failure does not lose). Over HTTP on a served gateway, the page's figures match the calls and
listings real clients made, markup is text, and only admin keys get in."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest

import mcp_gateway.storage.postgres as postgres_module
import mcp_gateway.storage.sqlite as sqlite_module
from mcp_gateway import Gateway
from mcp_gateway.catalog import restrict
from mcp_gateway.codemode import META_TOOLS
from mcp_gateway.dashboard.routes import CSP
from mcp_gateway.governance.identity import identity_for
from mcp_gateway.naming import client_prefix
from mcp_gateway.savings import SavingsLedger, day_of
from mcp_gateway.storage import AuditRow, Budget, Storage, StorageUnavailable, Window
from mcp_gateway.storage.usage import ApprovalCount, Bucket, Saving
from mcp_gateway.tokens import tool_definition_tokens
from tests.dashboard.test_pages import ADMIN, ANN, BOB, HOSTILE, anyio_backend, served
from tests.helpers import eventually, key_client, make_config, serve_gateway, stdio, text_of
from tests.stores import BACKENDS, Cuttable, open_store, postgres_schema

pytestmark = pytest.mark.anyio
__all__ = ["anyio_backend", "served"]  # module fixtures shared with test_pages (one gateway per module)

HOUR = 3600.0


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as s:
        yield s


def call(ts: float, **fields: Any) -> AuditRow:
    base: dict[str, Any] = dict(key="ann", team=None, endpoint="/mcp", kind="tool", server="math", tool="add",
                                outcome="ok", latency_ms=1.0, ts=ts)
    return AuditRow(**{**base, **fields})


async def test_buckets_count_calls_errors_and_nearest_rank_percentiles(store: Storage) -> None:
    since = time.time() // HOUR * HOUR - 2 * HOUR  # three hour buckets, the last one still filling
    for i in range(1, 21):  # math, first hour: 1..20 ms, every 5th an error
        await store.write_audit(call(since + i, latency_ms=float(i), outcome="tool_error" if i % 5 == 0 else "ok"))
    await store.write_audit(call(since + 2 * HOUR + 1, latency_ms=7.0))
    for ms in (3.0, 1.0, 2.0):
        await store.write_audit(call(since + HOUR + 5, server="text", latency_ms=ms))
    for left_out in (call(since + 1, outcome="started"), call(since + 1, server=None, kind="meta"),
                     call(since + 1, server=""), call(since - 1, latency_ms=999.0)):
        await store.write_audit(left_out)
    buckets, unread = await store.usage_buckets(since, HOUR)
    assert sorted(buckets, key=lambda b: (b.server, b.index)) == [
        Bucket("math", 0, 20, 4, 10.0, 19.0), Bucket("math", 2, 1, 0, 7.0, 7.0), Bucket("text", 1, 3, 0, 2.0, 3.0)]
    assert unread is None
    days, _ = await store.usage_buckets(since - 86400, 86400)  # the row just before `since` is in its first bucket
    assert sorted((b.server, b.index, b.calls, b.p95_ms) for b in days) == [
        ("math", 0, 1, 999.0), ("math", 1, 21, 19.0), ("text", 1, 3, 3.0)]


async def test_buckets_say_when_the_row_bound_cut_the_window(store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "STATS_ROWS", 5)
    monkeypatch.setattr(postgres_module, "STATS_ROWS", 5)
    since = time.time() - HOUR
    for i in range(10):
        await store.write_audit(call(since + i))
    buckets, unread = await store.usage_buckets(since, HOUR)
    assert [b.calls for b in buckets] == [5] and unread == since + 4
    assert (await store.usage_buckets(since + 5, HOUR))[1] is None  # what was left out is before the window


async def test_approvals_by_recorded_decision(store: Storage) -> None:
    since = time.time() // HOUR * HOUR - HOUR
    decisions = ["accept", "accept", "decline", "cancel", "unsupported", "too_long"]
    for i, decision in enumerate(decisions):
        await store.write_audit(call(since + i, approval=decision,
                                     outcome="ok" if decision == "accept" else "ApprovalRefused"))
    await store.write_audit(call(since + HOUR + 1, outcome="ApprovalRefused"))  # a row from before decisions
    await store.write_audit(call(since + 1))  # needed no approval
    await store.write_audit(call(since - 1, approval="accept"))  # before the window
    got = await store.approval_counts(since, HOUR)
    assert sorted(got, key=lambda a: (a.index, a.decision)) == [
        ApprovalCount(0, "accept", 2), ApprovalCount(0, "cancel", 1), ApprovalCount(0, "decline", 1),
        ApprovalCount(0, "too_long", 1), ApprovalCount(0, "unsupported", 1), ApprovalCount(1, "", 1)]


async def test_limit_refusals_and_counter_use(store: Storage) -> None:
    now = time.time()
    for key, ts in (("ann", now), ("ann", now), ("bob", now), ("bob", now - 7200)):
        await store.write_audit(call(ts, key=key, outcome="QuotaExceeded"))
    await store.write_audit(call(now, key="carl"))
    assert await store.quota_refusals(now - 60) == {"ann": 2, "bob": 1}
    window = Window("keys.ann.calls", 10, 60.0)
    await store.take([window], now - 120)  # outside the last minute
    for _ in range(3):
        assert await store.take([window], now) is None
    for _ in range(2):
        assert await store.charge([Budget("keys.ann.2026-12-05", 5.0)], 1.5) is None
    used = await store.counter_use(["keys.ann.calls", "keys.bob.calls"], now - 60, ["keys.ann.2026-12-05", "x"])
    assert used == {"keys.ann.calls": 3.0, "keys.ann.2026-12-05": 3.0}
    assert await store.counter_use([], now, []) == {}


async def test_savings_add_up_per_key_and_day_and_are_pruned(store: Storage) -> None:
    today = day_of(time.time())
    batch = [Saving(today, "ann", 1, 100, 1000), Saving(today, "bob", 2, 200, 300),
             Saving(today - 86400, "ann", 1, 100, 900)]
    await store.book_savings(batch)
    await store.book_savings(batch[:1])
    await store.book_savings([])
    assert await store.savings(today - 86400) == [Saving(today - 86400, "ann", 1, 100, 900),
                                                  Saving(today, "ann", 2, 200, 2000), Saving(today, "bob", 2, 200, 300)]
    assert [s.saved for s in await store.savings(today)] == [1800, 100]
    await store.prune(today - 1, 0)
    assert [s.day for s in await store.savings(0)] == [today, today]


class DownStore:
    """A store whose writes fail, as one that cannot be reached."""

    writes = 0

    async def book_savings(self, rows: list[Saving]) -> None:
        self.writes += 1
        raise StorageUnavailable("down")


async def test_the_ledger_books_in_memory_and_keeps_counts_the_store_refused(store: Storage) -> None:
    clock = [day_of(time.time()) + 10.0]
    down = DownStore()
    ledger = SavingsLedger(down, now=lambda: clock[0])  # type: ignore[arg-type]
    for _ in range(3):
        ledger.book("ann", 100, 1000)
    ledger.book("bob", 100, 150)
    assert down.writes == 0  # a listing never waits for the store
    await ledger.flush()  # fails: logged, kept
    assert down.writes == 1
    clock[0] += 86400
    ledger.book("ann", 100, 1000)
    ledger.storage = store
    await ledger.flush()
    await ledger.flush()  # nothing left: nothing written twice
    day = day_of(clock[0])
    assert await store.savings(0) == [Saving(day - 86400, "ann", 3, 300, 3000), Saving(day - 86400, "bob", 1, 100, 150),
                                      Saving(day, "ann", 1, 100, 1000)]


# ---- over HTTP ------------------------------------------------------------------------------------


def cell(page: str, attribute: str, row: str) -> int:
    found = re.search(rf'<tr data-key="{re.escape(row)}">.*?{attribute}="(-?\d+)"', page, re.S)
    assert found is not None, (row, attribute)
    return int(found.group(1))


async def test_the_page_shows_each_keys_savings_and_each_servers_calls(served: tuple[Gateway, str]) -> None:
    gw, base = served
    async with key_client(base + "/mcp", BOB) as bob:
        listed = await bob.list_tools()
    assert {t.name for t in listed.tools} >= {"listToolFiles", "executeToolCode"}
    prefix = client_prefix(gw.config.gateway.name)
    k = gw.config.keys["bob"]
    visible = restrict(gw.full_catalog, identity_for(gw.config, "bob", k.team, k.groups, k.remove_groups, k.deny),
                       gw.config.gateway.layout)
    full = tool_definition_tokens([e.tool for e in visible.entries if e.direct_name is None], prefix)
    sent = tool_definition_tokens(META_TOOLS, prefix)
    assert full > sent > 0
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        page = (await http.get("/ui/usage")).text
        days = (await http.get("/ui/usage", params={"span": "14d"})).text
    lists = cell(page, "data-lists", "bob")
    assert lists >= 1  # this listing (an SDK client may list again on its own)
    assert (cell(page, "data-sent", "bob"), cell(page, "data-full", "bob")) == (lists * sent, lists * full)
    assert cell(page, "data-saved", "bob") == lists * (full - sent)
    rows = [r for r in await gw.storage.query_audit(limit=10_000) if r.kind == "tool" and r.outcome != "started"]
    for server in ("math", "markup"):
        calls = [r for r in rows if r.server == server]
        errors = sum(r.outcome != "ok" for r in calls)
        expected = f'data-server="{server}" data-calls="{len(calls)}" data-errors="{errors}"'
        assert expected in page and expected in days, server
    assert 'data-server="math" data-calls="3" data-errors="1"' in page  # ann's script: two adds and a failure
    assert "<svg" in page and "<rect" in page and "<polyline" in page


async def test_markup_in_key_and_server_names_is_text(served: tuple[Gateway, str]) -> None:
    gw, base = served
    await gw.storage.book_savings([Saving(day_of(time.time()), HOSTILE, 1, 10, 20)])
    await gw.storage.write_audit(call(time.time(), key=HOSTILE, server=HOSTILE, outcome="QuotaExceeded"))
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        page = (await http.get("/ui/usage")).text
    escaped = html.escape(HOSTILE, quote=True)
    assert f'data-key="{escaped}"' in page and f'data-server="{escaped}"' in page
    assert page.count(html.escape(HOSTILE, quote=False)) >= 4  # savings row, server heading, chart labels, refusals
    assert "<script" not in page


async def test_only_admin_keys_get_the_page(served: tuple[Gateway, str]) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        answers = {who: await http.get("/ui/usage", headers=headers) for who, headers in (
            ("none", {}), ("ann", {"X-API-Key": ANN}), ("bob", {"Authorization": f"Bearer {BOB}"}),
            ("admin", {"X-API-Key": ADMIN}))}
    assert {who: r.status_code for who, r in answers.items()} == {"none": 401, "ann": 403, "bob": 403, "admin": 200}
    for r in answers.values():
        assert r.headers["content-security-policy"] == CSP and "<script" not in r.text.lower()
    assert "data-server" not in answers["ann"].text and "data-key" not in answers["bob"].text
    assert 'href="usage" aria-current="page"' in answers["admin"].text


KEY = "limited-key-0123456789"


async def test_approvals_and_limits_match_the_calls_made() -> None:
    """Two calls accepted and one declined by the user, a fourth refused by the key's rate limit: the
    page counts the decisions, the minute's calls against the limit and the budgets the accepted calls spent."""
    answers = ["accept", "accept", "decline"]

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action=answers.pop(0))  # type: ignore[arg-type]

    config = make_config(
        {"math": stdio("math_server", mode="direct")},
        dashboard={"enabled": True},
        groups={"all": {"tools": ["*"]}},
        teams={"t": {"groups": ["all"], "budget_per_month": 100}},
        keys={"k": {"key": KEY, "team": "t", "calls_per_minute": 3, "budget_per_day": 10},
              "ops": {"key": ADMIN, "admin": True, "groups": ["all"]}},
        tools={"math.add": {"approval": "always", "price": 0.25}},
    )
    gw = Gateway(config)
    async with serve_gateway(gw) as url:
        async with key_client(url, KEY, mode="legacy", elicitation_callback=on_elicit) as client:
            results = [await client.call_tool("math_add", {"a": 1, "b": i}) for i in range(4)]
        async with httpx.AsyncClient(base_url=url.removesuffix("/mcp"), headers={"X-API-Key": ADMIN}) as http:
            page = (await http.get("/ui/usage")).text
    assert [r.is_error for r in results] == [False, False, True, True]
    assert "the user answered decline" in text_of(results[2]) and "rate limit" in text_of(results[3])
    assert 'data-asked="3" data-answered="3"' in page
    assert 'data-decision="accept" data-count="2"' in page and 'data-decision="decline" data-count="1"' in page
    assert 'data-limit="keys.k.calls_per_minute" data-used="3.0"' in page
    assert 'data-limit="keys.k.budget_per_day" data-used="0.5"' in page
    assert 'data-limit="teams.t.budget_per_month" data-used="0.5"' in page
    assert re.search(r'<tr data-key="k"><td><a [^>]*>k</a></td><td class="num">1</td>', page)


async def test_a_listing_while_the_store_is_down_is_answered_and_booked_later() -> None:
    proxy = Cuttable()
    async with postgres_schema() as url, anyio.create_task_group() as tg:
        await proxy.restore(tg)
        config = make_config({"math": stdio("math_server")}, groups={"all": {"tools": ["*"]}},
                             storage={"url": proxy.through(url), "connect_timeout_s": 2},
                             keys={"k": {"key": KEY, "groups": ["all"]}})
        gw = Gateway(config)
        async with serve_gateway(gw) as gw_url, key_client(gw_url, KEY) as client:
            await gw.token_savings.flush()  # what the client's own listings booked so far
            before = {s.key: s.lists for s in await gw.storage.savings(0)}.get("k", 0)
            await proxy.cut()
            listed = await client.list_tools()
            assert "executeToolCode" in {t.name for t in listed.tools}
            await gw.token_savings.flush()  # the store refuses: kept
            await proxy.restore(tg)

            async def booked() -> bool:  # once the store answers again, the next flush writes the listing
                await gw.token_savings.flush()
                try:
                    return {s.key: s.lists for s in await gw.storage.savings(0)}.get("k", 0) > before
                except StorageUnavailable:
                    return False

            await eventually(booked, 10)
        tg.cancel_scope.cancel()
