"""HTTP connections that cannot hold the gateway: a deadline for request headers, and a cap on connections.

uvicorn closes a kept-alive connection that stays idle, but not one that was opened and then sends
nothing (or sends its headers a byte at a time): each would keep a socket, and enough of them use
up the process's file descriptors. `HeaderDeadline` closes a connection whose request headers are
not complete `header_timeout_s` after it opened or after its previous response; `limit_concurrency`
(`gateway.max_connections`) answers 503 beyond that many connections.
"""

from __future__ import annotations

import asyncio
import resource
from functools import partial
from typing import Any

import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("mcp_gateway.server")


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's headers."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            self._arm()
        elif self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()


def protocol(header_timeout_s: float) -> Any:
    """The protocol class (factory) to give uvicorn as `http=`."""
    return partial(HeaderDeadline, header_timeout_s=header_timeout_s)


def raise_file_limit() -> None:
    """Use the hard limit on open files, so the connection cap is reached before the descriptors run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.info("open-file limit not raised", soft=soft, hard=hard, error=str(exc))
