"""The interface of durable state (keys, audit rows) and its records; one implementation per backend."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


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


class Storage(Protocol):
    def add_key(self, key: StoredKey) -> None: ...
    def revoke_key(self, name: str) -> bool: ...
    def list_keys(self) -> list[StoredKey]: ...
    def find_key(self, key_hash: str) -> StoredKey | None:
        """The active key with this hash."""
        ...

    def is_revoked(self, name: str) -> bool:
        """Whether the stored key `name` has been revoked (false for names never stored)."""
        ...
    def has_keys(self) -> bool:
        """Whether any key was ever stored, revoked ones included."""
        ...
    def write_audit(self, row: AuditRow) -> int:
        """Commit a new row; returns its id."""
        ...

    def finish_audit(self, row_id: int, row: AuditRow) -> None:
        """Replace what an earlier `write_audit` stored under `row_id` with `row` (the call's outcome)."""
        ...

    def prune_audit(self, before: float) -> int:
        """Delete the rows older than `before` (seconds since the epoch); returns how many."""
        ...
    def query_audit(self, *, key: str | None = None, tool: str | None = None, since: float | None = None,
                    limit: int = 1000) -> list[AuditRow]: ...
    def close(self) -> None: ...
