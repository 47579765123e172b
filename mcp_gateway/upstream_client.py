"""The SDK `Client` to one upstream: opening it over stdio, streamable HTTP or SSE, and reading its listings.

Every message an upstream sends is held to its `max_message_bytes` before any of it is parsed:
stdio lines are read by the gateway (`upstream_stdio.py`), HTTP bodies through a response hook
(`upstream_http.py`); the request a refused message answered gets an error naming the limit.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypedDict, TypeVar

import httpx2
import mcp_types as types
from mcp.client import Client, Transport
from mcp.client.session import ElicitationFnT, LoggingFnT, MessageHandlerFnT, SamplingFnT
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ._version import __version__
from .config import ServerConfig
from .upstream_http import Bodies, restored
from .upstream_stdio import stdio_transport

MAX_PAGES = 1000
"""Pages of any listing read from one upstream (tools, resources, prompts): a bound on a cursor that never ends."""
_T = TypeVar("_T")


class ClientOptions(TypedDict, total=False):
    """Keyword arguments for an upstream's SDK `Client`: `Client(transport, ..., **hooks.client_options())`."""

    sampling_callback: SamplingFnT
    elicitation_callback: ElicitationFnT
    logging_callback: LoggingFnT
    message_handler: MessageHandlerFnT
    log_level: types.LoggingLevel


@contextlib.asynccontextmanager
async def open_client(config: ServerConfig, options: ClientOptions) -> AsyncIterator[Client]:
    """Open an SDK `Client` for any of the three transports."""
    async with contextlib.AsyncExitStack() as stack:
        transport: Transport
        if config.kind == "stdio":
            transport = stdio_transport(config)
        elif config.kind == "sse":
            assert config.url is not None
            transport = sse_client(config.url, headers=config.headers or None)
        else:
            assert config.url is not None
            bodies = Bodies(config.max_message_bytes)
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=config.headers, timeout=httpx2.Timeout(30.0, read=300.0), follow_redirects=False,
                    event_hooks={"response": [bodies.bound]},
                )
            )
            transport = restored(streamable_http_client(config.url, http_client=http), bodies)
        client = await stack.enter_async_context(
            Client(transport, cache=None, client_info=types.Implementation(name="mcp-gateway", version=__version__),
                   **options)
        )
        yield client


class _Page(Protocol):
    next_cursor: str | None


_P = TypeVar("_P", bound=_Page)


async def all_pages(fetch: Callable[[str | None], Awaitable[_P]], items: Callable[[_P], list[_T]]) -> list[_T]:
    """Every item of a paginated listing (`fetch(cursor)` gets a page), for at most `MAX_PAGES` pages."""
    found: list[_T] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        found.extend(items(page))
        cursor = page.next_cursor
        if not cursor:
            break
    return found


async def list_all_tools(client: Client) -> list[types.Tool]:
    return await all_pages(lambda cursor: client.list_tools(cursor=cursor), lambda page: page.tools)


_STALE = re.compile(r"session (not found|terminated|expired)", re.IGNORECASE)


def is_stale_session(exc: MCPError) -> bool:
    """An upstream's 404 for our session id, which it refused before running anything.

    The SDK client reports a bare 404 as "Session terminated"; the Python SDK's server sends
    "Session not found" (-32600), the TypeScript SDK's "Session not found" (-32001).
    """
    return exc.code in (types.INVALID_REQUEST, -32001) and _STALE.search(exc.message) is not None
