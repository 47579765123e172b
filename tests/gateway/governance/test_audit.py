"""The audit log's rows: redaction, bounds per row and per key, retention, and refusing what it cannot write."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway.config import GatewaySettings
from mcp_gateway.errors import AuditUnavailable
from mcp_gateway.governance.audit import Auditor, in_execution
from mcp_gateway.governance.identity import Identity
from mcp_gateway.storage import SQLiteStorage, Storage
from tests.stores import BACKENDS, open_store

ANN = Identity("ann", team="t")
DAY = 1_796_000_000.0


@pytest.fixture
def unopened(tmp_path: Path) -> SQLiteStorage:
    """A store for tests that only build rows (nothing is opened until a row is written)."""
    return SQLiteStorage(tmp_path / "gateway.db")


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as store:
        yield store


def auditor(storage: Storage, now: float = DAY, **settings: Any) -> Auditor:
    return Auditor(storage, GatewaySettings(audit_arguments=True, **settings), now=lambda: now)


def stored(a: Auditor, arguments: dict[str, Any], kind: str = "tool") -> str:
    row = a.row(ANN, kind=kind, server="s", tool="t", arguments=arguments, outcome="ok", started=time.perf_counter())
    assert row.arguments is not None
    return row.arguments


def test_keys_containing_a_redact_word_are_redacted(unopened: SQLiteStorage) -> None:
    text = stored(auditor(unopened), {"access_token": "a1", "client_secret": "b2", "Password": "c3",
                                     "nested": [{"X-Api-Key": "d4"}], "user": "ann"})
    assert json.loads(text) == {"access_token": "[redacted]", "client_secret": "[redacted]", "Password": "[redacted]",
                                "nested": [{"X-Api-Key": "[redacted]"}], "user": "ann"}


def test_secrets_written_into_a_script_are_redacted_in_its_row(unopened: SQLiteStorage) -> None:
    code = ('x = db.login(user="ann", password="hunter2")\n'
            "cfg = {'api_key': 'k-123', \"token\":\"t-9\"}\nclient_secret = 'abc'\nresult = x")
    text = json.loads(stored(auditor(unopened), {"code": code}, kind="meta"))["code"]
    for secret in ("hunter2", "k-123", "t-9", "abc"):
        assert secret not in text
    assert 'user="ann"' in text and 'password="[redacted]"' in text and "result = x" in text


def test_one_row_stores_at_most_audit_row_argument_bytes(unopened: SQLiteStorage) -> None:
    text = stored(auditor(unopened, audit_row_argument_bytes=1000), {"blob": "é" * 5000})
    kept, _, note = text.partition(" [cut: ")
    assert len(kept.encode()) <= 1000 and note.endswith("more bytes]")


def test_one_key_stores_at_most_its_daily_allowance_then_only_says_so(unopened: SQLiteStorage) -> None:
    a = auditor(unopened, audit_key_argument_bytes_per_day=3000)
    texts = [stored(a, {"blob": "x" * 900}) for _ in range(5)]
    assert [t.startswith("{") for t in texts] == [True, True, True, False, False]
    assert texts[-1] == "[not stored: key ann reached audit_key_argument_bytes_per_day]"
    assert stored(auditor(unopened, now=DAY + 86400, audit_key_argument_bytes_per_day=3000), {"a": 1}) == '{"a": 1}'


@pytest.mark.anyio
async def test_rows_older_than_the_retention_are_pruned(storage: Storage) -> None:
    for age_days in (100, 50, 1):
        a = auditor(storage, now=DAY - age_days * 86400)
        await a.record(a.row(ANN, kind="tool", server="s", tool=f"t{age_days}", arguments={}, outcome="ok",
                             started=time.perf_counter()))
    assert await auditor(storage, audit_retention_days=30).prune() == 2
    assert [r.tool for r in await storage.query_audit()] == ["t1"]
    assert await auditor(storage, audit_retention_days=0).prune() == 0


@pytest.mark.anyio
async def test_begin_writes_a_started_row_that_record_completes(storage: Storage) -> None:
    a = auditor(storage)
    started = time.perf_counter()
    with in_execution("run-1"):
        row_id = await a.begin(a.row(ANN, kind="tool", server="s", tool="t", arguments={}, outcome="started",
                                     started=started))
        assert [(r.outcome, r.execution_id) for r in await storage.query_audit()] == [("started", "run-1")]
        await a.record(a.row(ANN, kind="tool", server="s", tool="t", arguments={}, outcome="ok", started=started,
                             result_bytes=7), row_id)
    assert [(r.outcome, r.result_bytes) for r in await storage.query_audit()] == [("ok", 7)]


@pytest.mark.anyio
async def test_begin_refuses_when_the_row_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "gateway.db").mkdir()  # a directory where the database file should be
    a = auditor(SQLiteStorage(tmp_path / "gateway.db"))
    with pytest.raises(AuditUnavailable, match=r"s\.t was not called: the audit log cannot be written"):
        await a.begin(a.row(ANN, kind="tool", server="s", tool="t", arguments={}, outcome="started",
                            started=time.perf_counter()))
