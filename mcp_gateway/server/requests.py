"""Requests the gateway makes to its upstreams on a client's behalf (resources, prompts, completions, logging).

Which upstreams a caller may reach, one request under the upstream's timeout with failures turned
into JSON-RPC errors, the same request to several upstreams at once, and what an upstream serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import mcp_types as types
import structlog
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from ..errors import GatewayError, describe_exception
from ..gateway import Gateway
from ..governance.identity import Identity
from ..results import own_meta as own_meta  # resources and prompts import it from here
from ..upstream import Upstream

log = structlog.get_logger("mcp_gateway.server")

_T = TypeVar("_T")


def may_access(identity: Identity, up: Upstream) -> bool:
    """Whether the caller sees the upstream's resources and prompts (see `Identity.may_use`)."""
    return identity.may_use(up.name, [t.name for t in up.tools])


def visible(gw: Gateway, identity: Identity) -> list[Upstream]:
    """Ready upstreams the caller may use, in configuration order."""
    return [u for u in gw.upstreams if u.client is not None and may_access(identity, u)]


async def ask(gw: Gateway, up: Upstream, request: Callable[[Client], Awaitable[_T]]) -> _T:
    """One request to an upstream under its timeout; failures become JSON-RPC errors for the client."""
    client = up.client
    if client is None:
        raise MCPError(types.INTERNAL_ERROR, f"server {up.name} is unavailable ({up.status})")
    timeout = gw.config.timeout_of(up.config)
    try:
        with anyio.fail_after(timeout):
            return await request(client)
    except MCPError:
        raise
    except TimeoutError:
        raise MCPError(types.INTERNAL_ERROR, f"{up.name}: no answer within {timeout:g} s") from None
    except (GatewayError, ValidationError, OSError) as exc:
        raise MCPError(types.INTERNAL_ERROR, f"{up.name}: {describe_exception(exc)}") from exc


async def gather(gw: Gateway, ups: list[Upstream],
                 request: Callable[[Client], Awaitable[_T]]) -> list[tuple[str, _T]]:
    """The same request to several upstreams at once; one that fails is logged and left out."""
    answers: dict[str, _T] = {}

    async def one(up: Upstream) -> None:
        try:
            answers[up.name] = await ask(gw, up, request)
        except MCPError as exc:
            if exc.code != types.METHOD_NOT_FOUND:
                log.warning("upstream listing failed", server=up.name, error=exc.message)
        except Exception as exc:  # one broken upstream must not empty everyone's listing
            log.warning("upstream listing failed", server=up.name, error=describe_exception(exc))

    async with anyio.create_task_group() as tg:
        for up in ups:
            tg.start_soon(one, up)
    return [(u.name, answers[u.name]) for u in ups if u.name in answers]


def first_of_each(answers: list[tuple[str, list[_T]]], key: Callable[[_T], str]) -> list[tuple[str, _T]]:
    """(server, item) for every item, in order; an item whose key an earlier server listed is left out."""
    seen: set[str] = set()
    listed: list[tuple[str, _T]] = []
    for server, items in answers:
        for item in items:
            if key(item) not in seen:
                seen.add(key(item))
                listed.append((server, item))
    return listed


async def cached_or_fresh(lookup: Callable[[], _T | None], refresh: Callable[[], Awaitable[object]]) -> _T | None:
    """`lookup()` in what was listed before; if it finds nothing, list again (`refresh`) and look once more."""
    found = lookup()
    if found is None:
        await refresh()
        found = lookup()
    return found


def serves(up: Upstream, feature: str) -> bool:
    """Whether the upstream announced `feature` (a capability name, or "subscribe" for resource updates)."""
    client = up.client
    if client is None:
        return False
    caps = client.server_capabilities
    if feature == "subscribe":
        return bool(caps.resources and caps.resources.subscribe)
    return getattr(caps, feature, None) is not None


def handshake_era(up: Upstream) -> bool:
    client = up.client
    return client is not None and client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
