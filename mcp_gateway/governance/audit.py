"""The audit log: one row per call, written before an upstream tool runs and completed after it.

A tool call that cannot be recorded is not made (`begin` raises `AuditUnavailable`). A row names its
caller as shown (`key`: a key's name, a signed-in user's email) and unambiguously (`principal`: `key:<name>`
or `user:<sub>`, `Identity.principal`). What one row and one caller (by principal) can write is bounded
(`audit_row_argument_bytes`, `audit_key_argument_bytes_per_day`); secrets are redacted by key name (any
key containing a `redact` word, ignoring case, `-` and `_`) and, in script sources, in string literals
assigned to such names; rows older than `audit_retention_days` are pruned.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
import structlog

from ..config import GatewaySettings
from ..errors import AuditUnavailable
from ..storage import AuditRow, Storage
from .identity import Identity

log = structlog.get_logger("mcp_gateway.audit")

MAX_ERROR_CHARS = 2000
"""Characters of an error message kept in a row."""
REDACTED = "[redacted]"
RETURNED = "result = "
"""How a script's answer introduces the value it returned (`codemode.scripts.format_execution`)."""
_LOGIN_STATE = re.compile(r"([?&]state=)[^&#\s\"'<>)]+")
"""A login link's `state`: whoever opens the link decides whose upstream account the caller gets, so rows
(read by admins, kept for months) keep the link without it."""
COUNTER_RETENTION_S = 40 * 86400
"""Budgets not charged for this long (past days and months) are deleted by `prune`."""

execution_id: ContextVar[str | None] = ContextVar("mcp_gateway_execution", default=None)


@contextmanager
def in_execution(run_id: str | None) -> Iterator[None]:
    """Tag the audit rows written inside the block (a script's row and its tool calls) with its id."""
    token = execution_id.set(run_id)
    try:
        yield
    finally:
        execution_id.reset(token)


class Auditor:
    def __init__(self, storage: Storage, settings: GatewaySettings, now: Callable[[], float] = time.time,
                 replica: str | None = None) -> None:
        self.storage = storage
        self.settings = settings
        self.now = now
        self.replica = replica
        self.redact = tuple(_folded(r) for r in settings.redact)
        self._literal = _literal_pattern(tuple(r.lower() for r in settings.redact))
        self._stored: dict[tuple[str, str], int] = {}

    def opened(self, identity: Identity, *, kind: str, server: str | None, tool: str,
               arguments: Mapping[str, Any]) -> AuditRow:
        """The row of a call that starts now (`outcome = "started"`); arguments are sized and redacted once here."""
        args_json = json.dumps(arguments, ensure_ascii=False, default=str)
        return AuditRow(
            key=identity.name, team=identity.team, endpoint=f"/mcp/{identity.group}" if identity.group else "/mcp",
            kind=kind, server=server, tool=tool, outcome="started", latency_ms=0.0,
            arg_bytes=len(args_json.encode()), result_bytes=0, error=None,
            arguments=self._stored_arguments(identity.principal, identity.name, arguments)
            if self.settings.audit_arguments else None,
            execution_id=execution_id.get(), approval=None, ts=self.now(), replica=self.replica,
            principal=identity.principal,
        )

    def completed(self, row: AuditRow, *, outcome: str, started: float, result_bytes: int = 0,
                  error: str | None = None, approval: str | None = None, result: str | None = None) -> AuditRow:
        """`row` with the call's outcome, `started` being its `time.perf_counter()` at the start."""
        return dataclasses.replace(row, outcome=outcome, latency_ms=round((time.perf_counter() - started) * 1000, 3),
                                   result_bytes=result_bytes,
                                   error=None if error is None else without_login_state(error)[:MAX_ERROR_CHARS],
                                   approval=approval, result=result)

    def keeps_answer(self, kind: str, tool: str) -> bool:
        """Whether a call's row keeps what it answered (`returned`): a script's, with `audit_arguments`."""
        return self.settings.audit_arguments and (kind, tool) == ("meta", "executeToolCode")

    def returned(self, row: AuditRow, answer: types.CallToolResult | None) -> str | None:
        """What a script's row keeps of its answer: the text its caller was sent (printed output, then
        `result = <JSON>`, then any error, as `codemode.scripts.format_execution` writes them), only with
        `audit_arguments`, redacted and bounded as arguments are: the returned value by key name, every other
        line by string literal, cut at `audit_row_argument_bytes` and counted against the caller's day."""
        if answer is None or not self.keeps_answer(row.kind, row.tool):
            return None
        texts = [b.text for b in answer.content if isinstance(b, types.TextContent)]
        lines = [self._redacted_line(line) for line in without_login_state("\n".join(texts)).split("\n")]
        if len(texts) < len(answer.content):
            lines.append(f"[and {len(answer.content) - len(texts)} returned blocks: images, audio or resources]")
        return self._capped(row.principal or f"key:{row.key}", row.key, "\n".join(lines))

    def row(self, identity: Identity, *, kind: str, server: str | None, tool: str, arguments: Mapping[str, Any],
            outcome: str, started: float, result_bytes: int = 0, error: str | None = None,
            approval: str | None = None) -> AuditRow:
        """A whole row at once (`opened`, then `completed`)."""
        row = self.opened(identity, kind=kind, server=server, tool=tool, arguments=arguments)
        return self.completed(row, outcome=outcome, started=started, result_bytes=result_bytes, error=error,
                              approval=approval)

    async def begin(self, row: AuditRow) -> int:
        """Commit a row before the call runs; raises `AuditUnavailable` when it cannot be written."""
        with anyio.CancelScope(shield=True):
            try:
                row_id = await self.storage.write_audit(row)
            except Exception as exc:
                log.error("audit write failed: call refused", error=str(exc), tool=row.tool)
                raise AuditUnavailable(f"{row.server}.{row.tool}", str(exc)) from None
        return row_id

    async def record(self, row: AuditRow, row_id: int | None = None) -> None:
        """Commit the row (completing the one `begin` wrote, if any), shielded so a cancelled call is recorded."""
        with anyio.CancelScope(shield=True):
            try:
                if row_id is None:
                    await self.storage.write_audit(row)
                else:
                    await self.storage.finish_audit(row_id, row)
            except Exception as exc:  # the call has happened: say so loudly, but answer it
                log.error("audit write failed", error=str(exc), tool=row.tool)

    async def prune(self) -> int:
        """Delete rows older than `audit_retention_days` (none when it is 0), and budgets of past months."""
        days = self.settings.audit_retention_days
        before = self.now() - days * 86400 if days > 0 else 0.0
        return await self.storage.prune(before, self.now() - COUNTER_RETENTION_S)

    def _stored_arguments(self, principal: str, name: str, arguments: Mapping[str, Any]) -> str:
        return self._capped(principal, name, json.dumps(self._redacted(arguments), ensure_ascii=False, default=str))

    def _capped(self, principal: str, name: str, text: str) -> str:
        """`text` cut at `audit_row_argument_bytes`, if the caller (`principal`, shown as `name`) has room left
        today (`audit_key_argument_bytes_per_day`)."""
        limit = self.settings.audit_row_argument_bytes
        encoded = text.encode()
        if len(encoded) > limit:
            text = encoded[:limit].decode(errors="ignore") + f" [cut: {len(encoded) - limit} more bytes]"
        day = datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%d")
        if (principal, day) not in self._stored:
            self._stored = {k: v for k, v in self._stored.items() if k[1] == day}  # forget earlier days
        stored = self._stored.get((principal, day), 0)
        if stored + len(text) > self.settings.audit_key_argument_bytes_per_day:
            who = "user" if principal.startswith("user:") else "key"
            return f"[not stored: {who} {name} reached audit_key_argument_bytes_per_day]"
        self._stored[(principal, day)] = stored + len(text)
        return text

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: REDACTED if self._secret(str(k)) else self._redacted(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redacted(v) for v in value]
        if isinstance(value, str) and self._literal is not None:
            return self._literal.sub(lambda m: m.group(1) + '"' + REDACTED + '"', value)
        return value

    def _redacted_line(self, line: str) -> str:
        if line.startswith(RETURNED):
            try:
                value = json.loads(line[len(RETURNED):])
            except ValueError:
                pass
            else:
                return RETURNED + json.dumps(self._redacted(value), ensure_ascii=False)
        return str(self._redacted(line))

    def _secret(self, name: str) -> bool:
        folded = _folded(name)
        return any(word in folded for word in self.redact)


def _folded(name: str) -> str:
    """`X-Api-Key`, `api_key` and `APIKEY` alike: lower case, letters and digits only."""
    return "".join(c for c in name.lower() if c.isalnum())


def _literal_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """`password = "..."`, `api_key='...'`, `"token": "..."` in source text: the literal is group 2."""
    if not words:
        return None
    name = r"[\"']?\w*(?:" + "|".join(re.escape(w) for w in words) + r")\w*[\"']?"
    literal = r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')"
    return re.compile(rf"(?i)({name}\s*[=:]\s*){literal}")


def without_login_state(text: str) -> str:
    """`text` with the `state` of any login link in it redacted."""
    return _LOGIN_STATE.sub(r"\1" + REDACTED, text)
