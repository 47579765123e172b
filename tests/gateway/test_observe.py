"""The one place a call is observed: its audit row (real SQLite) and its metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from mcp_gateway.config import GatewaySettings
from mcp_gateway.errors import QuotaExceeded, UpstreamUnavailable
from mcp_gateway.governance.audit import Auditor
from mcp_gateway.governance.identity import Identity
from mcp_gateway.metrics import Metrics
from mcp_gateway.observe import Observer
from mcp_gateway.storage import AuditRow, Storage
from tests.stores import BACKENDS, open_store

pytestmark = pytest.mark.anyio
ALICE = Identity("alice", team="platform", allow=("*",))


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as store:
        yield store


@pytest.fixture
def observer(storage: Storage) -> Observer:
    return Observer(Metrics(), Auditor(storage, GatewaySettings(audit_arguments=True, redact=["password"])))


def calls(observer: Observer) -> dict[tuple[str, str, str, str], float]:
    """`mcp_gateway_tool_calls_total` from the rendered metrics, by (server, tool, via, outcome)."""
    found: dict[tuple[str, str, str, str], float] = {}
    for family in text_string_to_metric_families(observer.metrics.render().decode()):
        for s in family.samples:
            if s.name == "mcp_gateway_tool_calls_total":
                found[(s.labels["server"], s.labels["tool"], s.labels["via"], s.labels["outcome"])] = s.value
    return found


def latency_count(observer: Observer, server: str, tool: str) -> float:
    for family in text_string_to_metric_families(observer.metrics.render().decode()):
        for s in family.samples:
            if s.name == "mcp_gateway_tool_call_seconds_count" and s.labels == {"server": server, "tool": tool}:
                return s.value
    return 0.0


async def only_row(storage: Storage) -> AuditRow:
    [row] = await storage.query_audit()
    return row


async def test_an_ok_call(observer: Observer, storage: Storage) -> None:
    result = types.CallToolResult(content=[types.TextContent(text="12345")])
    async with observer.observed(ALICE, "tool", "math", "add", {"a": 1, "password": "hunter2"}, "direct") as seen:
        seen.result(result)
    row = await only_row(storage)
    assert (row.key, row.team, row.endpoint, row.kind, row.server, row.tool) == (
        "alice", "platform", "/mcp", "tool", "math", "add")
    assert (row.outcome, row.error, row.result_bytes, row.approval) == ("ok", None, 5, None)
    assert row.arg_bytes == len('{"a": 1, "password": "hunter2"}')
    assert row.arguments == '{"a": 1, "password": "[redacted]"}'
    assert row.latency_ms >= 0
    assert calls(observer) == {("math", "add", "direct", "ok"): 1.0}
    assert latency_count(observer, "math", "add") == 1.0


async def test_the_approval_and_the_endpoint_are_recorded(observer: Observer, storage: Storage) -> None:
    async with observer.observed(ALICE.at_endpoint("ops", ["*"]), "tool", "fs", "rm", {}, "script") as seen:
        seen.approval = "accept"
    row = await only_row(storage)
    assert (row.endpoint, row.approval, row.outcome) == ("/mcp/ops", "accept", "ok")
    assert calls(observer) == {("fs", "rm", "script", "ok"): 1.0}


async def test_a_tool_error_result(observer: Observer, storage: Storage) -> None:
    result = types.CallToolResult(
        content=[types.TextContent(text=" division "), types.TextContent(text="by zero\n")], is_error=True)
    async with observer.observed(ALICE, "tool", "math", "div", {"a": 1, "b": 0}, "direct") as seen:
        seen.result(result)
    row = await only_row(storage)
    assert (row.outcome, row.error) == ("tool_error", "division by zero")
    assert calls(observer) == {("math", "div", "direct", "tool_error"): 1.0}


@pytest.mark.parametrize("error", [QuotaExceeded("budget: key alice has spent 1 of 1"),
                                   UpstreamUnavailable("math", "connecting")])
async def test_a_gateway_error_is_recorded_under_its_class_name(
    observer: Observer, storage: Storage, error: Exception
) -> None:
    with pytest.raises(type(error)):
        async with observer.observed(ALICE, "tool", "math", "add", {}, "direct"):
            raise error
    row = await only_row(storage)
    name = type(error).__name__
    assert (row.outcome, row.error) == (name, str(error))
    assert calls(observer) == {("math", "add", "direct", name): 1.0}


async def test_an_mcp_error(observer: Observer, storage: Storage) -> None:
    with pytest.raises(MCPError):
        async with observer.observed(ALICE, "prompt", "docs", "review", {"pr": "7"}, "client"):
            raise MCPError(-32603, "docs: no answer within 5 s")
    row = await only_row(storage)
    assert (row.kind, row.outcome, row.error) == ("prompt", "error", "docs: no answer within 5 s")
    assert calls(observer) == {("docs", "review", "client", "error"): 1.0}


async def test_a_cancelled_call_is_still_recorded(observer: Observer, storage: Storage) -> None:
    with anyio.CancelScope() as scope:
        async with observer.observed(ALICE, "tool", "slow", "sleep", {"s": 60}, "direct"):
            scope.cancel()
            await anyio.sleep(60)
    assert scope.cancelled_caught
    row = await only_row(storage)
    assert (row.outcome, row.error) == ("cancelled", "cancelled before the upstream answered")
    assert calls(observer) == {("slow", "sleep", "direct", "cancelled"): 1.0}


async def test_an_unexpected_exception_is_not_recorded_as_ok(observer: Observer, storage: Storage) -> None:
    with pytest.raises(anyio.BrokenResourceError):
        async with observer.observed(ALICE, "resource", "docs", "file:///a", {}, "client"):
            raise anyio.BrokenResourceError("upstream stream closed")
    row = await only_row(storage)
    assert row.outcome != "ok"
    assert row.error is not None


async def test_a_resource_uri_is_audited_but_is_not_a_metrics_label(
    observer: Observer, storage: Storage
) -> None:
    uri = "file:///home/alice/secret-plans.txt"
    result = types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text="abc")])
    async with observer.observed(ALICE, "resource", "docs", uri, {}, "client") as seen:
        seen.result(result)
    row = await only_row(storage)
    assert (row.kind, row.tool, row.result_bytes) == ("resource", uri, 3)
    assert calls(observer) == {("docs", "resources/read", "client", "ok"): 1.0}
    assert "secret-plans" not in observer.metrics.render().decode()


async def test_a_meta_tool_has_no_server(observer: Observer, storage: Storage) -> None:
    async with observer.observed(ALICE, "meta", None, "listToolFiles", {}, "client"):
        pass
    row = await only_row(storage)
    assert (row.kind, row.server, row.tool) == ("meta", None, "listToolFiles")
    assert calls(observer) == {("", "listToolFiles", "client", "ok"): 1.0}


async def test_calls_are_counted_per_outcome(observer: Observer, storage: Storage) -> None:
    for _ in range(3):
        async with observer.observed(ALICE, "tool", "math", "add", {}, "script"):
            pass
    with pytest.raises(QuotaExceeded):
        async with observer.observed(ALICE, "tool", "math", "add", {}, "script"):
            raise QuotaExceeded("rate limit")
    assert calls(observer) == {("math", "add", "script", "ok"): 3.0,
                               ("math", "add", "script", "QuotaExceeded"): 1.0}
    assert latency_count(observer, "math", "add") == 4.0
    assert [r.outcome for r in await storage.query_audit()] == ["ok", "ok", "ok", "QuotaExceeded"]
