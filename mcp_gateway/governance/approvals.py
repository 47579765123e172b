"""Approvals: which calls need the user's consent, and asking the user of the requesting client.

Where the request enters, the server binds an `Approver` for its client (`asking`); the call
path asks it through `approve` when `needs_approval` says so.
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

Approver = Callable[[str], Awaitable[str]]
"""Asks the user about `message`; returns "accept", "decline", "cancel" or "unsupported"."""

MAX_SHOWN = 500
"""Characters of the arguments shown in the question."""

_current: ContextVar[Approver | None] = ContextVar("mcp_gateway_approver", default=None)


@contextlib.contextmanager
def asking(approver: Approver) -> Iterator[None]:
    """Approvals needed inside the block are asked through `approver`."""
    token = _current.set(approver)
    try:
        yield
    finally:
        _current.reset(token)


def needs_approval(config: GatewayConfig, server: str, tool: types.Tool) -> bool:
    """`[tools."<pattern>"] approval` rules first; else destructive tools when `approve_destructive` is on."""
    ref = f"{server}.{tool.name}"
    rules = [r.approval for p, r in config.tools.items() if fnmatchcase(ref, p) and r.approval]
    if rules:
        return "never" not in rules
    hints = tool.annotations
    return bool(config.gateway.approve_destructive and hints is not None
                and hints.destructive_hint and not hints.read_only_hint)


async def approve(ref: str, arguments: Mapping[str, Any]) -> str:
    """Ask the connected user; returns the decision, or raises `ApprovalRefused` unless accepted."""
    shown = json.dumps(arguments, ensure_ascii=False, default=str)
    shown = shown if len(shown) <= MAX_SHOWN else shown[:MAX_SHOWN] + "…"
    approver = _current.get()
    decision = "unsupported" if approver is None else await approver(f"Allow the tool call {ref}({shown})?")
    if decision == "unsupported":
        raise ApprovalRefused(f"{ref} needs the user's approval, and this client cannot ask (no elicitation)")
    if decision != "accept":
        raise ApprovalRefused(f"{ref} needs the user's approval, and the user answered {decision}")
    return decision
