"""The bounds one script runs under; plain data so it can cross the pipe to a worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MIN_MEMORY_MB = 128
"""Below this a worker cannot start: measured idle RLIMIT_DATA use is ~92 MiB (Go thread stacks + Python)."""


@dataclass(frozen=True)
class Limits:
    """Hard limits for one script run.

    `timeout_s` is wall-clock time enforced by the parent (tool calls count too);
    `memory_mb` bounds the worker's resident memory, whatever allocates it (watched from
    both sides, see `memory`), and is also its RLIMIT_DATA, which counts address space the
    Go runtime reserves too (about 85 MiB before a script starts).
    `max_result_bytes` bounds what leaves a script: `result`, and the arguments of one tool
    call (or of one `parallel` batch together); `max_tool_result_bytes` bounds what enters
    it: one tool result (or the results of one `parallel` batch together), as the JSON
    sent to the worker. Sizes are of compact JSON with non-ASCII characters escaped.
    """

    timeout_s: float = 30.0
    max_source_bytes: int = 256 * 1024
    max_output_bytes: int = 64 * 1024
    max_result_bytes: int = 1024 * 1024
    max_tool_calls: int = 200
    memory_mb: int = 512
    max_depth: int = 64
    max_tool_result_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        """Refuse limits a worker cannot honour, at configuration time rather than on first run."""
        if self.memory_mb < MIN_MEMORY_MB:
            raise ValueError(f"memory_mb must be at least {MIN_MEMORY_MB} (the worker's own baseline)")
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"{field.name} must be positive")

    def to_dict(self) -> dict[str, Any]:
        """The form sent to a worker in a `run` frame."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        """Inverse of `to_dict`; unknown keys are ignored so either side may be newer."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class PoolLimits:
    """Bounds of the pool as a whole, shared by every run (`Sandbox(pool=...)`).

    `max_workers` caps the worker processes (None: twice the pool's `workers`): beyond the
    warm `workers`, extra ones are started only for a key that has no script running while
    every warm worker is busy. `max_queued_per_key` and `max_queued` bound the runs waiting
    for a worker, for one key and in all; a run over either fails at once. A run that waited
    `queue_timeout_s` (or its own `timeout_s`, if shorter) fails; the wait counts against `timeout_s`.
    """

    max_workers: int | None = None
    max_queued_per_key: int = 16
    max_queued: int = 64
    queue_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and value <= 0:
                raise ValueError(f"{field.name} must be positive")

    def worker_cap(self, workers: int) -> int:
        """The most worker processes a pool of `workers` warm ones may have."""
        cap = 2 * workers if self.max_workers is None else self.max_workers
        if cap < workers:
            raise ValueError(f"max_workers ({cap}) must be at least workers ({workers})")
        return cap
