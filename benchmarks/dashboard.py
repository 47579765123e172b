"""The dashboard's pages with 100,000 audit rows, on SQLite and on PostgreSQL: server time per page.

    .venv/bin/python benchmarks/dashboard.py [--rows 100000] [--runs 7] [--postgres postgresql://...]

The gateway's app is served in this process by uvicorn on 127.0.0.1 (an admin key in the config,
five disabled upstreams so the upstreams page has rows). The rows span the last 24 hours: 50 keys
in 5 teams, 5 servers, 20 tools, 1 in 25 an error, 1 in 10 a script with three calls under it,
arguments of about 200 bytes, 1 in 50 tool calls with an approval decision, each script's row with
what it returned. The teams have rate limits and budgets, every key has 14 days of Code Mode savings
rows (the usage page), and the upstreams have 20,000 recorded state changes (a flapping history, for
the upstreams page's reconnect history). The live calls page's poll asks for the rows after the 20th
newest. Each page is loaded once to warm up, then `--runs` times; the table gives the median and the
slowest load, in milliseconds, over real HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import free_port, postgres_schema, wait_for_port
from mcp_gateway import Gateway, parse_config
from mcp_gateway.server import build_app
from mcp_gateway.storage import AuditRow, PostgresStorage, SQLiteStorage, Storage

ADMIN = "bench-admin-key-0123456789"
COLUMNS = tuple(AuditRow.__dataclass_fields__)
PAGES = [
    ("upstreams (hour and day stats)", "/ui/upstreams"),
    ("calls, newest", "/ui/calls"),
    ("calls, deep page (before=id 20,000)", "/ui/calls?before=20000"),
    ("calls, key", "/ui/calls?key=k7"),
    ("calls, team", "/ui/calls?team=t2"),
    ("calls, server + last hour", "/ui/calls?server=s3&window=1h"),
    ("calls, tool", "/ui/calls?tool=tool17"),
    ("calls, outcome", "/ui/calls?outcome=tool_error"),
    ("calls, key + outcome (sparse)", "/ui/calls?key=k7&outcome=tool_error"),
    ("calls, no match", "/ui/calls?key=nobody"),
    ("calls, live poll (20 newer rows)", "/ui/calls-rows?after={live}"),
    ("calls, live poll (key, none newer)", "/ui/calls-rows?after={newest}&key=k7"),
    ("access", "/ui/access"),
    ("access, one key", "/ui/access?subject=key:ops"),
    ("usage, 24 h by hour", "/ui/usage"),
    ("usage, 14 days by day", "/ui/usage?span=14d"),
]
DECISIONS = ("accept", "accept", "accept", "decline", "cancel", "unsupported")


def rows(n: int) -> list[tuple[object, ...]]:
    rnd = random.Random(7)
    asked = random.Random(11)  # its own stream: the other columns are what they were before approvals
    now = time.time()
    out: list[tuple[object, ...]] = []
    while len(out) < n:
        i = len(out)
        key = rnd.randrange(50)
        base = dict(ts=now - 86400 * (1 - i / n), key=f"k{key}", team=f"t{key % 5}", endpoint="/mcp", replica="bench",
                    approval=None, result_bytes=rnd.randrange(5000))
        args = json.dumps({"query": "x" * rnd.randrange(100, 200), "limit": rnd.randrange(100)})
        if rnd.random() < 0.1:
            run = uuid.uuid4().hex
            for _ in range(3):
                out.append(_row(rnd, base, args, run))
            out.append(tuple({**base, "kind": "meta", "server": None, "tool": "executeToolCode", "outcome": "ok",
                              "latency_ms": rnd.uniform(5, 200), "arg_bytes": 300, "error": None,
                              "arguments": json.dumps({"code": "result = s1.tool3(q=1)"}), "execution_id": run,
                              "result": 'result = {"rows": 3, "first": "' + "x" * 100 + '"}'}[c]
                             for c in COLUMNS))
        else:
            out.append(_row(rnd, base, args, None))
        if asked.random() < 0.02 and out[-1][COLUMNS.index("kind")] == "tool":
            decision = asked.choice(DECISIONS)
            values = dict(zip(COLUMNS, out[-1], strict=True))
            out[-1] = tuple({**values, "approval": decision,
                             "outcome": "ok" if decision == "accept" else "ApprovalRefused"}[c] for c in COLUMNS)
    return out[:n]


def savings() -> list[tuple[object, ...]]:
    """14 days of Code Mode listings for each of the 50 keys (day, key, lists, sent, full)."""
    today = time.time() // 86400 * 86400
    return [(today - d * 86400, f"k{k}", 40, 40 * 1200, 40 * (5000 + 100 * k)) for d in range(14) for k in range(50)]


def _row(rnd: random.Random, base: dict[str, object], args: str, run: str | None) -> tuple[object, ...]:
    bad = rnd.random() < 0.04
    values = {**base, "kind": "tool", "server": f"s{rnd.randrange(5)}", "tool": f"tool{rnd.randrange(20)}",
              "outcome": "tool_error" if bad else "ok", "latency_ms": rnd.lognormvariate(3, 0.8),
              "arg_bytes": len(args), "error": "upstream said no" if bad else None, "arguments": args,
              "execution_id": run, "result": None}
    return tuple(values[c] for c in COLUMNS)


def events() -> list[tuple[object, ...]]:
    """20,000 state changes over 30 days, spread over the five servers and two replicas (ts, server, replica,
    event, detail)."""
    now = time.time()
    kinds = [("failed", "connection lost: health check: no answer within 5 s"), ("retrying", "attempt 1 in 0.7 s"),
             ("ready", "20 tools")]
    return [(now - 30 * 86400 * (1 - i / 20_000), f"s{i % 5}", f"r{i % 2}", *kinds[i % 3]) for i in range(20_000)]


@contextlib.asynccontextmanager
async def sqlite_store(n: int) -> AsyncIterator[Storage]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gateway.db"
        store = SQLiteStorage(path)
        await store.migrate()
        db = sqlite3.connect(path)
        with db:
            db.executemany(f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                           rows(n))
            db.executemany("INSERT INTO token_savings VALUES (?, ?, ?, ?, ?)", savings())
            db.executemany("INSERT INTO upstream_events (ts, server, replica, event, detail) VALUES (?, ?, ?, ?, ?)",
                           events())
        db.execute("ANALYZE")
        db.close()
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def postgres_store(url: str, n: int) -> AsyncIterator[Storage]:
    async with postgres_schema(url) as schema_url:
        store = PostgresStorage(schema_url)
        try:
            await store.migrate()
            conn = await asyncpg.connect(schema_url)
            schema = schema_url.rsplit("=", 1)[1]
            await conn.copy_records_to_table("audit", records=rows(n), columns=COLUMNS, schema_name=schema)
            await conn.copy_records_to_table("token_savings", records=savings(), schema_name=schema)
            await conn.copy_records_to_table("upstream_events", records=events(), schema_name=schema,
                                             columns=("ts", "server", "replica", "event", "detail"))
            await conn.execute("ANALYZE audit")
            await conn.execute("ANALYZE upstream_events")
            await conn.close()
            yield store
        finally:
            await store.close()


async def measure(store: Storage, runs: int, n: int) -> dict[str, tuple[float, float, int]]:
    config = parse_config({
        "gateway": {"state_dir": tempfile.mkdtemp(prefix="mcp-gateway-bench-")},
        "dashboard": {"enabled": True},
        "servers": {f"s{i}": {"command": "true", "enabled": False} for i in range(5)},
        "groups": {"all": {"tools": ["*"]}, "some": {"tools": ["s1.*", "s2.tool1*"]}},
        "teams": {f"t{i}": {"groups": ["some"], "calls_per_minute": 600, "budget_per_day": 100,
                            "budget_per_month": 1000} for i in range(5)},
        "keys": {"ops": {"key": ADMIN, "admin": True, "groups": ["all"]}},
    })
    port = free_port()
    results: dict[str, tuple[float, float, int]] = {}
    async with Gateway(config, storage=store) as gw, anyio.create_task_group() as tg:
        server = uvicorn.Server(uvicorn.Config(build_app(gw), host="127.0.0.1", port=port, log_level="warning"))
        tg.start_soon(server.serve)
        await wait_for_port(port, 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": ADMIN},
                                     timeout=60) as http:
            for name, path in PAGES:
                path = path.format(live=n - 20, newest=n)
                times = []
                for _ in range(runs + 1):
                    start = time.perf_counter()
                    answer = await http.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    answer.raise_for_status()
                results[name] = (statistics.median(times[1:]), max(times[1:]), answer.text.count("data-id="))
        server.should_exit = True
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    found: dict[str, dict[str, tuple[float, float, int]]] = {}
    async with sqlite_store(args.rows) as store:
        found["SQLite"] = await measure(store, args.runs, args.rows)
    async with postgres_store(args.postgres, args.rows) as store:
        found["PostgreSQL"] = await measure(store, args.runs, args.rows)
    print(f"{args.rows:,} audit rows; median / slowest of {args.runs} loads, ms; rows shown\n")
    print("| page | SQLite median | SQLite max | PostgreSQL median | PostgreSQL max | rows shown |")
    print("|---|---|---|---|---|---|")
    for name, _ in PAGES:
        s, p = found["SQLite"][name], found["PostgreSQL"][name]
        print(f"| {name} | {s[0]:.1f} | {s[1]:.1f} | {p[0]:.1f} | {p[1]:.1f} | {s[2]} |")


if __name__ == "__main__":
    anyio.run(main)
