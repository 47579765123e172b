"""The one path every upstream tool call takes, whether a client called it directly or a script did.

In order: the caller's allowlist (not allowed and not existing give the same error), the
arguments against the tool's schema, the rate limit, approval, the budget, the audit row, the
upstream under its timeout, then its result against the tool's output schema. The whole call is
observed once (log line, metrics, audit row), a refused one too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import UrlElicitationRequiredError

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
from .governance.links import LOGIN_INPUT, can_open_links, url_request
from .governance.rounds import current_round, digest_of
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

    Raises `GatewayError` for anything the caller did wrong or the upstream could not answer, or
    answered against its own output schema (`InvalidOutput`); an upstream `isError` result is returned as it is.
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
            failure = await _login_needed(gw, ref, exc, direct=via == "direct")
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
        await gw.validators.check_result(entry, result)  # the SDK client's own check is off (`open_client`)
        seen.result(result)
        return result


async def _login_needed(gw: Gateway, ref: str, login: LoginRequired, *, direct: bool) -> GatewayError:
    """The caller's own login to an upstream that acts as each caller: a link made for this caller only. A client
    that can open URLs is sent there (a 2026-07-28 client in an input-required round, a 2025-11-25 client's
    direct call with the -32042 error); any other gets the link in the error."""
    up = gw.upstream(login.server)
    try:
        assert gw.grants is not None
        link, state = await start_login(gw.grants, up.name, up.config, login.owner, gw.config.callback_url())
    except (LoginError, StorageUnavailable) as exc:
        return UpstreamError(ref, f"it needs your own login, and none could be started: {exc}")
    message = f"{up.name} acts as each caller and needs your own login ({login.why})"
    current = current_round()
    if can_open_links() and current is not None:
        question = digest_of("login", [up.name, login.owner])
        if question not in current.answers:  # asked once per call: a retry without the login gets the text
            current.ask(LOGIN_INPUT, url_request(f"{message}: sign in, then come back", link, state), question)
    elif can_open_links() and direct:
        raise UrlElicitationRequiredError([types.ElicitRequestURLParams(
            message=f"{message}: sign in, then call {ref} again", url=link, elicitation_id=state)], message)
    return LoginNeeded(f"{message}: open {link} within 10 minutes, sign in, then call {ref} again")


def _allowed(identity: Identity, target: ToolEntry | NotFound) -> ToolEntry:
    if isinstance(target, NotFound):
        raise target.refusal or UnknownTool(target.name, target.known)
    if not identity.allows(target.server, target.tool.name, target.spec.identifier):
        raise UnknownTool(target.direct_name or target.ref, [])
    return target
