"""The one path every upstream tool call takes, whether a client called it directly or a script did.

In order: the caller's allowlist (not allowed and not existing give the same error), the
arguments against the tool's schema, the rate limit, approval, the budget, the audit row, then the
upstream under its timeout. The whole call is observed once (log line, metrics, audit row), a
refused one too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from .catalog import ToolEntry
from .errors import (
    ApprovalRefused,
    GatewayError,
    KeyRevoked,
    LoginNeeded,
    StoreUnavailable,
    UnknownTool,
    UpstreamError,
    describe_exception,
)
from .gateway import Gateway
from .governance.approvals import approve, needs_approval
from .governance.identity import Identity
from .governance.rounds import current_round
from .oauth.errors import LoginError, LoginRequired
from .oauth.grants import owner_of
from .oauth.login import start_login
from .storage import StorageUnavailable


@dataclass(frozen=True)
class NotFound:
    """A name that is no tool the caller may call; `known` are the names it might have meant, and
    `refusal` says why when the caller may see its server but the server is down."""

    name: str
    known: Sequence[str] = ()
    refusal: GatewayError | None = None


async def call_tool(gw: Gateway, target: ToolEntry | NotFound, arguments: Mapping[str, Any], *,
                    via: str = "direct") -> types.CallToolResult:
    """Call `target` as the current caller.

    Raises `GatewayError` for anything the caller did wrong or the upstream could not answer;
    an upstream `isError` result is returned as it is.
    """
    identity = gw.identity
    args = dict(arguments)
    server, name = (target.server, target.tool.name) if isinstance(target, ToolEntry) else (None, target.name)
    async with gw.observer.observed(identity, "tool", server, name, args, via) as seen:
        try:
            if not await gw.keys.still_valid(identity):
                raise KeyRevoked(identity.name)
        except StorageUnavailable as exc:
            raise StoreUnavailable("the caller's key", str(exc)) from None
        entry = _allowed(identity, target)
        ref = f"{entry.server}.{entry.tool.name}"
        await gw.validators.check(entry, args)
        await gw.quota.check_rate(identity, "calls")
        if needs_approval(gw.config, entry.server, entry.tool, entry.spec.identifier):
            try:
                seen.approval = await approve(ref, args)
            except ApprovalRefused as exc:  # the row says why: the user's answer, or why nobody was asked
                seen.approval = exc.decision
                raise
        await gw.quota.charge(identity, gw.quota.price(entry.server, entry.tool.name))
        await seen.begin()
        up = gw.upstream(entry.server)
        timeout = gw.config.timeout_of(up.config)
        failure: GatewayError | None = None
        try:
            result = await up.call_tool(entry.tool.name, args, timeout,
                                        owner_of(identity) if up.personal is not None else None)
        except LoginRequired as exc:
            failure = await _login_needed(gw, ref, exc)
        except TimeoutError:
            failure = UpstreamError(ref, f"no answer within {timeout:g} s (timeout_s)")
        except GatewayError as exc:
            failure = exc
        except Exception as exc:
            failure = UpstreamError(ref, describe_exception(exc))
        current = current_round()
        need = current.needed() if current is not None else None
        if need is not None:  # the upstream asked the user something: the client answers on its retry
            raise need
        if failure is not None:
            raise failure
        seen.result(result)
        return result


async def _login_needed(gw: Gateway, ref: str, login: LoginRequired) -> GatewayError:
    """The caller's own login to an upstream that acts as each caller: a link made for this caller only."""
    up = gw.upstream(login.server)
    try:
        assert gw.grants is not None
        link = await start_login(gw.grants, up.name, up.config, login.owner, gw.config.callback_url())
    except (LoginError, StorageUnavailable) as exc:
        return UpstreamError(ref, f"it needs your own login, and none could be started: {exc}")
    return LoginNeeded(f"{up.name} acts as each caller and needs your own login ({login.why}): open {link} "
                       f"within 10 minutes, sign in, then call {ref} again")


def _allowed(identity: Identity, target: ToolEntry | NotFound) -> ToolEntry:
    if isinstance(target, NotFound):
        raise target.refusal or UnknownTool(target.name, target.known)
    if not identity.allows(target.server, target.tool.name, target.spec.identifier):
        raise UnknownTool(target.direct_name or target.ref, [])
    return target
