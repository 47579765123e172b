"""One audit row per call, written before the call is answered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import structlog

from ..storage import AuditRow, Storage
from .identity import Identity

log = structlog.get_logger("mcp_gateway.audit")

execution_id: ContextVar[str | None] = ContextVar("mcp_gateway_execution", default=None)


@contextmanager
def in_execution(run_id: str) -> Iterator[None]:
    """Tag the audit rows of every tool call made inside a script with its execution id."""
    token = execution_id.set(run_id)
    try:
        yield
    finally:
        execution_id.reset(token)


class Auditor:
    def __init__(self, storage: Storage, *, record_arguments: bool, redact: list[str]) -> None:
        self.storage = storage
        self.record_arguments = record_arguments
        self.redact = {r.lower() for r in redact}

    async def record(self, identity: Identity, *, kind: str, server: str | None, tool: str,
                     arguments: Mapping[str, Any], outcome: str, started: float,
                     result_bytes: int = 0, error: str | None = None, approval: str | None = None) -> None:
        """Commit the row off the event loop, shielded so a cancelled call is still recorded."""
        args_json = json.dumps(arguments, ensure_ascii=False, default=str)
        row = AuditRow(
            key=identity.name, team=identity.team, endpoint=f"/mcp/{identity.group}" if identity.group else "/mcp",
            kind=kind, server=server, tool=tool, outcome=outcome,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            arg_bytes=len(args_json.encode()), result_bytes=result_bytes, error=error,
            arguments=json.dumps(self._redacted(arguments), ensure_ascii=False, default=str)
            if self.record_arguments else None,
            execution_id=execution_id.get(), approval=approval,
        )
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self.storage.write_audit, row)
            except Exception as exc:  # the audit must never break the call itself
                log.error("audit write failed", error=str(exc), tool=tool)

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: "[redacted]" if str(k).lower() in self.redact else self._redacted(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redacted(v) for v in value]
        return value
