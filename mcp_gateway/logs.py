"""structlog setup: readable lines on a terminal, JSON lines otherwise; always on stderr.

The standard library's records (the SDK's, uvicorn's) are rate-limited per message: a flood of bad
requests from outside cannot grow the log without bound.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog


def configure_logging(level: str = "info") -> None:
    """Route structlog and the standard library's loggers (SDK, uvicorn) to stderr."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Repeats) for f in handler.filters):
            handler.addFilter(Repeats())


class Repeats(logging.Filter):
    """Passes at most `per_minute` records of one message (its template) per minute, then notes the drops."""

    def __init__(self, per_minute: int = 20, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.now = now
        self._minute = -1
        self._counts: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        minute = int(self.now() // 60)
        if minute != self._minute:
            dropped = sum(max(0, n - self.per_minute) for n in self._counts.values())
            self._minute, self._counts = minute, {}
            if dropped:
                record.msg = f"({dropped} repeated log records dropped in the last minute) {record.msg}"
        key = (record.name, record.msg)
        if len(self._counts) >= 1000 and key not in self._counts:
            key = ("", "")  # one bucket for the rest: the table itself stays bounded
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key] <= self.per_minute
