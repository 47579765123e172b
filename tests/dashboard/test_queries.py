"""The store's read-only queries behind the dashboard, on both backends: filters, keyset pages, a
script's calls, and per-server latency percentiles and error rates."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_gateway.storage import AuditRow, Storage
from mcp_gateway.storage.base import AuditFilter
from tests.stores import BACKENDS, open_store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as s:
        yield s


def row(i: int, **fields: object) -> AuditRow:
    base: dict[str, object] = dict(key="ann" if i % 2 else "bob", team="data" if i % 2 else None, endpoint="/mcp",
                                   kind="tool", server="math" if i % 3 else "text", tool="add" if i % 3 else "upper",
                                   outcome="ok" if i % 5 else "tool_error", latency_ms=float(i),
                                   ts=time.time() - 10 * (100 - i))
    return AuditRow(**{**base, **fields})  # type: ignore[arg-type]


async def test_pages_are_newest_first_and_keyset_paginated(store: Storage) -> None:
    ids = [await store.write_audit(row(i)) for i in range(100)]
    first = await store.audit_page(AuditFilter(), limit=30)
    assert [e.id for e in first] == ids[::-1][:30]
    second = await store.audit_page(AuditFilter(), before=first[-1].id, limit=30)
    assert [e.id for e in second] == ids[::-1][30:60]
    back = await store.audit_page(AuditFilter(), after=second[0].id, limit=30)
    assert [e.id for e in back] == [e.id for e in first]
    assert (await store.audit_page(AuditFilter(), after=ids[-1]))[:1] == []
    last = await store.audit_page(AuditFilter(), before=ids[5], limit=30)
    assert [e.id for e in last] == ids[:5][::-1]
    assert first[0].row == row(99, ts=first[0].row.ts)


async def test_filters_combine(store: Storage) -> None:
    for i in range(60):
        await store.write_audit(row(i))
    now = time.time()
    cases = {
        AuditFilter(key="ann"): lambda i: i % 2 == 1,
        AuditFilter(team="data", server="math"): lambda i: i % 2 == 1 and i % 3 != 0,
        AuditFilter(tool="upper", outcome="tool_error"): lambda i: i % 3 == 0 and i % 5 == 0,
        AuditFilter(since=now - 10 * (100 - 50) - 5): lambda i: i >= 50,
        AuditFilter(until=now - 10 * (100 - 10) + 5, key="bob"): lambda i: i <= 10 and i % 2 == 0,
    }
    for where, wanted in cases.items():
        got = await store.audit_page(where, limit=1000)
        assert [e.row.latency_ms for e in got] == [float(i) for i in reversed(range(60)) if wanted(i)], where


async def test_a_scripts_calls_are_nested_under_it(store: Storage) -> None:
    await store.write_audit(row(1, kind="meta", server=None, tool="listToolFiles"))
    script = await store.write_audit(row(2, kind="meta", server=None, tool="executeToolCode", execution_id="run-1"))
    calls = [await store.write_audit(row(3 + i, execution_id="run-1")) for i in range(3)]
    await store.write_audit(row(7, execution_id="run-2"))
    top = await store.audit_page(AuditFilter(top_level=True))
    assert [e.id for e in top][:2] == [script, script - 1]
    assert all(e.row.execution_id is None or e.row.kind == "meta" for e in top)
    assert len(await store.audit_page(AuditFilter())) == 6
    nested = await store.audit_of_executions(["run-1"])
    assert [e.id for e in nested] == calls
    assert len(await store.audit_of_executions(["run-1", "run-2"])) == 4
    assert await store.audit_of_executions([]) == []


async def test_server_stats_give_nearest_rank_percentiles_and_error_rates(store: Storage) -> None:
    now = time.time()
    for i in range(1, 101):  # math: 1..100 ms, every 10th a tool_error
        await store.write_audit(row(i, server="math", latency_ms=float(i), outcome="tool_error" if i % 10 == 0
                                    else "ok", ts=now - 60))
    await store.write_audit(row(1, server="text", latency_ms=7.0, outcome="ok", ts=now - 60))
    await store.write_audit(row(1, server="text", latency_ms=9999.0, outcome="started", ts=now - 60))  # in flight
    await store.write_audit(row(1, server="old", latency_ms=5.0, ts=now - 7200))  # outside the hour
    await store.write_audit(row(1, server="", tool="nope", outcome="UnknownTool", ts=now - 60))
    stats = {s.server: s for s in await store.server_stats(now - 3600)}
    assert set(stats) == {"math", "text"}
    assert (stats["math"].calls, stats["math"].errors, stats["math"].p50_ms, stats["math"].p95_ms) == (100, 10, 50, 95)
    assert (stats["text"].calls, stats["text"].errors, stats["text"].p50_ms, stats["text"].p95_ms) == (1, 0, 7, 7)
    assert {s.server for s in await store.server_stats(now - 86400)} == {"math", "text", "old"}
