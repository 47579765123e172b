"""The one path every upstream tool call takes, whether a client called it directly or a script did.

In order: the caller's allowlist (not allowed and not existing give the same error), the
arguments against the tool's schema, the rate limit, approval, the budget, then the upstream
under its timeout; the whole call is observed once (log line, metrics, audit row).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types

from .catalog import ToolEntry
from .errors import GatewayError, UnknownTool, UpstreamError, describe_exception
from .gateway import Gateway
from .governance.approvals import approve, needs_approval


async def call_tool(gw: Gateway, entry: ToolEntry, arguments: Mapping[str, Any], *,
                    via: str = "direct") -> types.CallToolResult:
    """Call `entry` as the current caller.

    Raises `GatewayError` for anything the caller did wrong or the upstream could not answer;
    an upstream `isError` result is returned as it is.
    """
    identity = gw.identity
    ref = f"{entry.server}.{entry.tool.name}"
    args = dict(arguments)
    async with gw.observer.observed(identity, "tool", entry.server, entry.tool.name, args, via) as seen:
        if not identity.allows(entry.server, entry.tool.name, entry.spec.identifier):
            raise UnknownTool(entry.direct_name or entry.ref, [])
        gw.validators.check(entry, args)
        gw.quota.check_rate(identity, "calls")
        if needs_approval(gw.config, entry.server, entry.tool, entry.spec.identifier):
            seen.approval = await approve(ref, args)
        gw.quota.charge(identity, gw.quota.price(entry.server, entry.tool.name))
        up = gw.upstream(entry.server)
        timeout = gw.config.timeout_of(up.config)
        try:
            result = await up.call_tool(entry.tool.name, args, timeout)
        except TimeoutError:
            raise UpstreamError(ref, f"no answer within {timeout:g} s (timeout_s)") from None
        except GatewayError:
            raise
        except Exception as exc:
            raise UpstreamError(ref, describe_exception(exc)) from exc
        seen.result(result)
        return result
