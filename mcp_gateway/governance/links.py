"""Sending a caller to a web page during a call (their own login to an upstream): URL-mode elicitation.

Where the request enters, the server records whether its client can open a URL for the user
(`elicitation.url` in its capabilities). A 2026-07-28 client is then asked in an input-required round
and retries the call after the user went there; a 2025-11-25 client gets the `-32042` error the
protocol gives for it (URL elicitation required) and retries; any other client gets the link in the
call's error text, which says what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

LOGIN_INPUT = "mcp-gateway/login"
"""The key of a login link in an input-required result (and of the client's answer in the retry)."""

_can_open: ContextVar[bool] = ContextVar("mcp_gateway_can_open_links", default=False)


@contextlib.contextmanager
def opening_links(can: bool) -> Iterator[None]:
    """Inside the block, the requesting client can (or cannot) send its user to a URL."""
    token = _can_open.set(can)
    try:
        yield
    finally:
        _can_open.reset(token)


def can_open_links() -> bool:
    return _can_open.get()


def url_request(message: str, url: str, elicitation_id: str) -> dict[str, Any]:
    """A URL-mode elicitation, as an input request of a 2026-07-28 input-required result."""
    return {"method": "elicitation/create",
            "params": {"mode": "url", "message": message, "url": url, "elicitationId": elicitation_id}}
