"""Sign-in's introspection (RFC 7662), bounded: any string sent as a bearer token would otherwise make the
gateway ask the provider (with the gateway's own client secret), once per request.

- an answer is reused for as long as `SignIn` says (`cache_s`, never past the token's expiry);
- a token the provider refused is refused again without asking, for `REFUSED_TTL_S`;
- requests with the same token share one introspection (the first asks, the others wait for its outcome);
- at most `MAX_INTROSPECTIONS` are in flight, for all tokens; a token that waits over `INTROSPECTION_WAIT_S`
  for its turn gets `SignInUnavailable` (503, fail closed).

Tokens are known here only by their SHA-256; each cache holds at most `MAX_CACHED`, the least recently used
dropped first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .errors import SignInUnavailable, TokenRefused

MAX_CACHED = 10_000
REFUSED_TTL_S = 30.0
MAX_INTROSPECTIONS = 8
INTROSPECTION_WAIT_S = 2.0

Ask = Callable[[str], Awaitable[tuple[dict[str, Any], float]]]
"""Introspects a token: the provider's answer, and until when (`time.time()`) it may be reused; raises
`TokenRefused` or `SignInUnavailable`."""


class Introspections:
    """The answers, refusals and introspections under way of one provider."""

    def __init__(self) -> None:
        self._answers: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._refused: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._slots = anyio.Semaphore(MAX_INTROSPECTIONS)

    async def answer(self, token: str, ask: Ask) -> dict[str, Any]:
        """The provider's answer for `token`: remembered, shared with a request already asking, or asked."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        while True:
            now = time.time()
            answered = self._answers.get(digest)
            if answered is not None and answered[0] > now:
                self._answers.move_to_end(digest)
                return answered[1]
            refused = self._refused.get(digest)
            if refused is not None and refused[0] > now:
                raise TokenRefused(refused[1])
            flight = self._flights.get(digest)
            if flight is None:
                break
            await flight.done.wait()  # another request is asking about this token: its outcome is this one's
            if isinstance(flight.outcome, dict):
                return flight.outcome
            if isinstance(flight.outcome, TokenRefused | SignInUnavailable):
                raise type(flight.outcome)(str(flight.outcome))
            # that request went away before the answer came: ask again
        flight = self._flights[digest] = _Flight()
        try:
            answer, until = await self._asked(token, ask)
            _remember(self._answers, digest, (until, answer))
            flight.outcome = answer
            return answer
        except TokenRefused as exc:
            _remember(self._refused, digest, (time.time() + REFUSED_TTL_S, str(exc)))
            flight.outcome = exc
            raise
        except SignInUnavailable as exc:  # not remembered: the next request asks again
            flight.outcome = exc
            raise
        finally:
            del self._flights[digest]
            flight.done.set()

    async def _asked(self, token: str, ask: Ask) -> tuple[dict[str, Any], float]:
        with anyio.move_on_after(INTROSPECTION_WAIT_S) as waiting:
            await self._slots.acquire()
        if waiting.cancelled_caught:
            raise SignInUnavailable(f"{MAX_INTROSPECTIONS} tokens are being introspected already (for over "
                                    f"{INTROSPECTION_WAIT_S:g} s)")
        try:
            return await ask(token)
        finally:
            self._slots.release()


class _Flight:
    """One introspection under way, whose outcome the other requests with the same token wait for."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: dict[str, Any] | Exception | None = None


def _remember(cache: OrderedDict[str, Any], digest: str, entry: Any) -> None:
    cache[digest] = entry
    cache.move_to_end(digest)
    while len(cache) > MAX_CACHED:
        cache.popitem(last=False)
