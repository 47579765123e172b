"""Calls that need the user's input, for 2026-07-28 clients (multi-round requests).

Such a client cannot be asked in the middle of a call. When the gateway (an approval) or an
upstream (an elicitation or sampling request) needs the user, the question is recorded in the
request's `Round`, the call is answered with an input-required result listing the questions
(`InputNeeded`), and the client retries the same call with the answers. A question is known by
its digest (an approval by its text, an upstream's request by its JSON), so an answer counts only
for the question it was given for. Answers carry from round to round in the `requestState`
(`answers:` and base64 JSON of the answers so far and which input key is which question), so a
call that asks twice keeps the first answer; a paused script keeps its answers in its journal
(`script:` states, codemode/journal.py). The state is the client's to echo: it holds only the
client's own answers, so it needs no secret, and any replica can continue the call.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

STATE = "answers:"
"""How a `requestState` that carries answers starts."""
MAX_STATE_BYTES = 64 * 1024
"""Answers one call may carry from round to round."""


def digest_of(kind: str, question: Any) -> str:
    """A question's identity: its kind and a hash of its canonical JSON."""
    text = json.dumps(question, sort_keys=True, ensure_ascii=False, default=str)
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()}"


@dataclass
class Round:
    """One request of a 2026-07-28 client: the answers it brings and the questions asked while serving it."""

    answers: dict[str, Any] = field(default_factory=dict)
    """Question digest -> the client's answer (JSON), from this retry, earlier rounds or a script's journal."""
    responses: Mapping[str, Any] = field(default_factory=dict)
    """This retry's `inputResponses` as sent (input key -> answer)."""
    state: str | None = None
    """This retry's `requestState` as sent."""
    requests: dict[str, Any] = field(default_factory=dict)
    """Input key -> the request to put to the client (asked while serving this round)."""
    pending: dict[str, str] = field(default_factory=dict)
    """Input key -> the digest of its question."""

    def ask(self, key: str, request: Any, digest: str) -> None:
        self.requests[key] = request
        self.pending[key] = digest

    def needed(self) -> InputNeeded | None:
        """The questions asked so far as one `InputNeeded` (and none left asked), or None."""
        if not self.requests:
            return None
        need = InputNeeded(dict(self.requests), dict(self.pending))
        self.requests.clear()
        self.pending.clear()
        return need

    def state_for(self, need: InputNeeded) -> str:
        """The `requestState` of the input-required result for `need`: its own, or the answers so far."""
        if need.state is not None:
            return need.state
        body = json.dumps({"answers": self.answers, "pending": need.pending}, separators=(",", ":"))
        if len(body) > MAX_STATE_BYTES:
            raise ValueError(f"the answers so far are {len(body)} bytes, more than one call carries "
                             f"({MAX_STATE_BYTES})")
        return STATE + base64.urlsafe_b64encode(body.encode()).decode()


def round_of(params: Mapping[str, Any] | None) -> Round:
    """The round a request's params describe: a retry's answers (carried and new), or a first round."""
    params = params or {}
    state = params.get("requestState")
    raw = params.get("inputResponses")
    responses: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if not isinstance(state, str):
        return Round(responses=responses)
    carried = _carried(state)
    answers = {str(k): v for k, v in carried.get("answers", {}).items()}
    for key, digest in carried.get("pending", {}).items():
        if key in responses and isinstance(digest, str):
            answers[digest] = responses[key]
    return Round(answers=answers, responses=responses, state=state)


def _carried(state: str) -> dict[str, Any]:
    if not state.startswith(STATE) or len(state) > 2 * MAX_STATE_BYTES:
        return {}
    try:
        found = json.loads(base64.urlsafe_b64decode(state[len(STATE):].encode()))
    except ValueError:
        return {}  # not one we made: no answers carried (the questions are asked again)
    if not isinstance(found, dict) or not isinstance(found.get("answers"), dict) \
            or not isinstance(found.get("pending"), dict):
        return {}
    return found


_round: ContextVar[Round | None] = ContextVar("mcp_gateway_round", default=None)


@contextlib.contextmanager
def serving_round(current: Round | None) -> Iterator[None]:
    """The request being served is this round (None: a 2025-11-25 client, asked mid-call instead)."""
    token = _round.set(current)
    try:
        yield
    finally:
        _round.reset(token)


def current_round() -> Round | None:
    return _round.get()


class InputNeeded(Exception):  # not a GatewayError: the call goes on when the client retries
    """Answer the call with an input-required result: `requests` for the client; `pending` says which
    input key is which question; `state`, if set, is echoed back instead of the answers so far."""

    def __init__(self, requests: dict[str, Any], pending: dict[str, str], state: str | None = None) -> None:
        super().__init__("the client must ask the user and retry the call")
        self.requests = requests
        self.pending = pending
        self.state = state
