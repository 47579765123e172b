"""Approvals: which calls need the user's consent, and asking the user of the requesting client.

Where the request enters, the server binds an `Approver` for its client (`asking`); the call
path asks it through `approve` when `needs_approval` says so. The question shows every argument
in full, with invisible and bidirectional-control characters made visible; arguments too long to
show in full are refused rather than summarised.

A 2025-11-25 client is asked mid-call (an elicitation request). A 2026-07-28 client cannot be:
its approver raises `InputNeeded` and the client retries the call with the user's answer
(`rounds.py`), which counts only for the question it was asked (same tool, same arguments).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from fnmatch import fnmatchcase
from typing import Any

import mcp_types as types

from ..config import GatewayConfig
from ..errors import ApprovalRefused
from ..visible import visible
from .rounds import current_round, digest_of

Approver = Callable[[str], Awaitable[str]]
"""Asks the user about `message`; returns "accept", "decline", "cancel" or "unsupported" (the client
cannot ask), or raises `InputNeeded` (the client asks and retries the call)."""

MAX_SHOWN = 4000
"""Characters of arguments a question may show; a call whose arguments need more is refused."""

APPROVAL_INPUT = "mcp-gateway/approval"
"""The key of the approval question in an input-required result, and of its answer in the retry."""

_current: ContextVar[Approver | None] = ContextVar("mcp_gateway_approver", default=None)


def given_answer(message: str) -> str | None:
    """The user's answer to this approval question, brought by this retry or an earlier round, if any."""
    current = current_round()
    found = None if current is None else current.answers.get(approval_state(message))
    action = found.get("action") if isinstance(found, Mapping) else found
    if found is None:
        return None
    return action if action in ("accept", "decline", "cancel") else "cancel"


def approval_state(message: str) -> str:
    """The approval question's digest: an answer counts for this question only (same tool, same arguments)."""
    return digest_of("approval", message)


def approval_request(message: str) -> dict[str, Any]:
    """The question as an input request: a form elicitation with no fields (accept, decline or cancel)."""
    return {"method": "elicitation/create",
            "params": {"mode": "form", "message": message, "requestedSchema": {"type": "object", "properties": {}}}}


@contextlib.contextmanager
def asking(approver: Approver) -> Iterator[None]:
    """Approvals needed inside the block are asked through `approver`."""
    token = _current.set(approver)
    try:
        yield
    finally:
        _current.reset(token)


def needs_approval(config: GatewayConfig, server: str, tool: types.Tool, alias: str | None = None) -> bool:
    """`[tools."<pattern>"] approval` rules first (an "always" wins over any "never": the safer rule);
    else destructive tools when `approve_destructive` is on. Patterns match the upstream name or `alias`."""
    refs = {f"{server}.{tool.name}", f"{server}.{alias or tool.name}"}
    rules = {r.approval for p, r in config.tools.items() if r.approval and any(fnmatchcase(ref, p) for ref in refs)}
    if rules:
        return "always" in rules
    hints = tool.annotations
    return bool(config.gateway.approve_destructive and hints is not None
                and hints.destructive_hint and not hints.read_only_hint)


def question(ref: str, arguments: Mapping[str, Any]) -> str:
    """The text the user is asked: every argument on its own line, nothing hidden; raises if too long."""
    lines = [f"  {visible(str(name))} = {visible(json.dumps(value, ensure_ascii=False, default=str))}"
             for name, value in arguments.items()]
    shown = "\n".join(lines)
    if len(shown) > MAX_SHOWN:
        raise ApprovalRefused(f"{ref} needs the user's approval, and its arguments are too long to show in full "
                              f"({len(shown)} characters; at most {MAX_SHOWN}): call it with shorter arguments",
                              "too_long")
    return f"Allow the tool call {ref}?" + (f"\n{shown}" if shown else " (no arguments)")


async def approve(ref: str, arguments: Mapping[str, Any]) -> str:
    """Ask the connected user; returns the decision, or raises `ApprovalRefused` unless accepted."""
    message = question(ref, arguments)
    approver = _current.get()
    decision = "unsupported" if approver is None else await approver(message)
    if decision == "unsupported":
        raise ApprovalRefused(f"{ref} needs the user's approval, and this client cannot ask (no elicitation)", decision)
    if decision == "cancel":  # also what an unattended client (`claude -p`) answers without asking anyone
        raise ApprovalRefused(f"{ref} needs the user's approval, and it was not given: the question was cancelled "
                              "(a client running unattended, such as `claude -p`, cancels every question without "
                              "asking anyone). Do not retry the call; tell the user it needs their approval", decision)
    if decision != "accept":
        raise ApprovalRefused(f"{ref} needs the user's approval, and the user answered {decision}", decision)
    return decision
