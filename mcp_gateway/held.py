"""Values set aside for a moment under random tokens, each taken back once.

The gateway hands the SDK small stand-ins in place of big values (an upstream's message, a result's
structured content, a result's encoded text) and takes the values back by token when the SDK is
done. A value nobody takes back (its request gave up) goes at the first put or take after `keep_s`, or
when the table holds `most` values and another comes: it stays bounded whatever an upstream or a client
does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

TOKEN_BYTES = 16
"""Random bytes of a token (written as 32 hex digits)."""


class Held(Generic[T]):
    """Token -> value, oldest first; `dropped` is told of each value that goes untaken."""

    def __init__(self, keep_s: float, most: int | None = None, dropped: Callable[[T], None] | None = None) -> None:
        self.keep_s = keep_s
        self.most = most
        self.dropped = dropped
        self._items: dict[str, tuple[float, T]] = {}

    def put(self, value: T) -> str:
        """Hold `value` (the oldest go past `most`); returns its token."""
        now = self._sweep()
        while self.most is not None and len(self._items) >= self.most:
            self._drop(next(iter(self._items)))
        token = secrets.token_hex(TOKEN_BYTES)
        self._items[token] = (now, value)
        return token

    def take(self, token: str) -> T | None:
        """The value held under `token`, once (None for a token unknown, taken or dropped)."""
        found = self._items.pop(token, None)
        self._sweep()
        return None if found is None else found[1]

    def _sweep(self) -> float:
        """Drop what waited over `keep_s`; returns the time now."""
        now = time.monotonic()
        while self._items and next(iter(self._items.values()))[0] < now - self.keep_s:
            self._drop(next(iter(self._items)))
        return now

    def _drop(self, token: str) -> None:
        _, gone = self._items.pop(token)
        if self.dropped is not None:
            self.dropped(gone)

    def __len__(self) -> int:
        return len(self._items)
