"""A script paused for the user's input (2026-07-28), and how it continues without repeating itself.

A 2026-07-28 client cannot be asked mid-call: a call that needs the user's approval is answered
with an input-required result, and the client retries the same call with the answer. A script
cannot keep its worker waiting for that retry (the client may never come back, and the retry may
reach another replica), so it is run again instead, with a journal: every tool call it made
before the pause is recorded with its result (or error), and on the retry the same calls are
answered from the journal, not made again. Starlark is deterministic (no clock, no randomness),
so the same script given the same results makes the same calls in the same order; a call is known
by its tool, its arguments and how many identical calls came before it, so `parallel` batches
replay too. The journal lives in the store (any replica can continue it) for `PAUSE_TTL_S`, bound
to the caller (its `Identity.principal`, never a name a signed-in user could share) and to the
script's source, and continues one retry: a retry the client cancelled, or a replay of one, runs
nothing more of it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..storage import Storage

PAUSE_TTL_S = 600.0
"""How long a paused script waits for the client's retry."""
MAX_JOURNAL_BYTES = 8 * 1024 * 1024
"""Results a paused script may carry into its next round; a larger one cannot pause (it is refused)."""
PREFIX = "script:"
"""How a paused script's `requestState` starts."""


@dataclass
class Journal:
    source: str
    """The script's digest: a journal continues only the script that made it."""
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Call key -> {"result": the tool's result as JSON} or {"error": the error text}."""
    answers: dict[str, Any] = field(default_factory=dict)
    """Question digest -> the client's answer, from earlier rounds (`governance/rounds.py`)."""
    pending: dict[str, str] = field(default_factory=dict)
    """Input key -> question digest, for the questions the last round stopped on."""
    overflow: bool = False
    """The run's results outgrew `MAX_JOURNAL_BYTES`: it cannot pause (nothing is kept)."""
    _seen: Counter[str] = field(default_factory=Counter, repr=False, compare=False)

    def key(self, ref: str, arguments: Mapping[str, Any]) -> str:
        """This call's key: tool, arguments, and how many identical calls this run made before it."""
        digest = hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()[:32]
        base = f"{ref} {digest}"
        self._seen[base] += 1
        return f"{base} {self._seen[base]}"


def digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


async def save(store: Storage, owner: str, journal: Journal) -> str:
    """Keep the journal for the retry; returns the `requestState` naming it. Raises `ValueError` if too large."""
    body = json.dumps({k: v for k, v in asdict(journal).items() if k not in ("_seen", "overflow")})
    if journal.overflow or len(body) > MAX_JOURNAL_BYTES:
        raise ValueError(f"its tool results so far are {len(body)} bytes, more than a paused script keeps "
                         f"({MAX_JOURNAL_BYTES})")
    state = PREFIX + secrets.token_urlsafe(24)
    await store.put_state(state, owner, body, time.time() + PAUSE_TTL_S)
    return state


async def load(store: Storage, owner: str, state: str, code: str) -> Journal:
    """The journal a retry names, taken: it continues that one retry; raises `ValueError` saying why it cannot continue.

    Taken, because a journal's calls end at its pause: a second retry naming it (a replay, or one sent
    after the client cancelled the first) would make again every call the first retry made after the
    pause. A retry that pauses again leaves a journal of its own, under a new state.
    """
    body = await store.get_state(state, owner)
    if body is None:
        raise ValueError(f"the paused script expired ({PAUSE_TTL_S:g} s) or is not this caller's")
    found = json.loads(body)
    if found.get("taken"):
        raise ValueError("an earlier retry continued it, or was cancelled")
    journal = Journal(found["source"], found["calls"], found["answers"], found["pending"] or {})
    if journal.source != digest(code):
        raise ValueError("the retry's script is not the one that paused")
    if await store.take_state(state, owner) != body:  # in one step: of two retries at once (any replicas) one wins
        raise ValueError("an earlier retry continued it, or was cancelled")
    await store.put_state(state, owner, _TAKEN, time.time() + PAUSE_TTL_S)  # later retries are told why
    return journal


_TAKEN = json.dumps({"taken": True})
