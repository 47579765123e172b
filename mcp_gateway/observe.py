"""The one place a call is observed: a log line, metrics and an audit row for every kind of call.

Upstream tool calls (direct or from a script), meta-tool calls, and forwarded resource reads and
prompt gets all run inside `Observer.observed(...)`; what the block sets on the yielded
`Observation` (or the exception it raises) decides the outcome that is recorded. A block that is
about to act upstream calls `await seen.begin()` first: the row is then written before the call
(and the call refused if it cannot be), and completed after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import mcp_types as types
import structlog
from mcp.shared.exceptions import MCPError

from .errors import GatewayError, describe_exception
from .governance.audit import Auditor
from .governance.identity import Identity
from .governance.rounds import InputNeeded
from .metrics import Metrics
from .results import error_text, result_bytes
from .storage import AuditRow

log = structlog.get_logger("mcp_gateway")

Kind = Literal["tool", "meta", "resource", "prompt"]


@dataclass
class Observation:
    """What is known of a call so far; the block fills in how it went."""

    outcome: str = "ok"
    error: str | None = None
    result_bytes: int = 0
    approval: str | None = None
    row_id: int | None = None
    answer: types.CallToolResult | None = field(default=None, repr=False)
    """A script's answer, for its row (`Auditor.returned`); other calls' results are not held."""
    keeps_answer: bool = field(default=False, repr=False)
    _begin: Callable[[], Awaitable[int]] | None = field(default=None, repr=False)

    async def begin(self) -> None:
        """Write the audit row now, before the upstream acts; raises `AuditUnavailable` if it cannot be."""
        if self._begin is not None and self.row_id is None:
            self.row_id = await self._begin()

    def result(self, result: types.CallToolResult | types.ReadResourceResult | types.GetPromptResult) -> None:
        """Record the answer: its size, and for a tool result with `isError`, that outcome and its text."""
        self.result_bytes = result_bytes(result)
        if isinstance(result, types.CallToolResult):
            if self.keeps_answer:
                self.answer = result
            if result.is_error:
                self.outcome, self.error = "tool_error", error_text(result)


class Observer:
    def __init__(self, metrics: Metrics, auditor: Auditor) -> None:
        self.metrics = metrics
        self.auditor = auditor

    @contextlib.asynccontextmanager
    async def observed(self, identity: Identity, kind: Kind, server: str | None, name: str,
                       arguments: Mapping[str, Any], via: str) -> AsyncIterator[Observation]:
        """Observe the block as one call of `name` (a tool, meta-tool, resource URI or prompt) by `identity`."""
        started = time.perf_counter()
        auditor = self.auditor
        opened = auditor.opened(identity, kind=kind, server=server, tool=name, arguments=arguments)

        def row(outcome: str) -> AuditRow:
            return auditor.completed(opened, outcome=outcome, started=started, result_bytes=seen.result_bytes,
                                     error=seen.error, approval=seen.approval,
                                     result=auditor.returned(opened, seen.answer) if outcome != "started" else None)

        seen = Observation(_begin=lambda: auditor.begin(row("started")),
                           keeps_answer=auditor.keeps_answer(kind, name))
        try:
            yield seen
        except GatewayError as exc:
            seen.outcome, seen.error = type(exc).__name__, str(exc)
            raise
        except InputNeeded:  # answered with the question; the client's retry is a call of its own
            seen.outcome = "input_required"
            raise
        except MCPError as exc:
            seen.outcome, seen.error = "error", exc.message
            raise
        except anyio.get_cancelled_exc_class():
            seen.outcome, seen.error = "cancelled", "cancelled before the upstream answered"
            raise
        except Exception as exc:
            seen.outcome, seen.error = "error", describe_exception(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            log.info("call", kind=kind, server=server, name=name, via=via, key=identity.name,
                     principal=identity.principal, ms=round(elapsed * 1000, 2), outcome=seen.outcome)
            label = _label(kind, server, name)
            self.metrics.calls.labels(server or "", label, via, seen.outcome).inc()
            self.metrics.latency.labels(server or "", label).observe(elapsed)
            completed = row(seen.outcome)
            seen._begin, seen.answer = None, None  # `seen` and `row` refer to each other: let refcounting free them
            await auditor.record(completed, seen.row_id)


def _label(kind: Kind, server: str | None, name: str) -> str:
    """The metrics label for a call: its name, unless callers choose it freely (URIs, unknown tool names)."""
    if kind == "resource":
        return "resources/read"
    if kind == "tool" and server is None:
        return "(unknown)"
    return name
