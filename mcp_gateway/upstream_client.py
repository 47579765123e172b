"""The SDK `Client` to one upstream: opening it over stdio, streamable HTTP or SSE, and reading its listings.

Every message an upstream sends is held to its `max_message_bytes` before any of it is parsed:
stdio lines are read by the gateway (`upstream_stdio.py`), HTTP bodies through a response hook
(`upstream_http.py`); the request a refused message answered gets an error naming the limit.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict, TypeVar

import httpx2
import mcp_types as types
from mcp.client import Client, Transport
from mcp.client.session import (
    ClientRequestContext,
    ElicitationFnT,
    ListRootsFnT,
    LoggingFnT,
    MessageHandlerFnT,
    SamplingFnT,
)
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ServerEvent

from ._version import __version__
from .config import ServerConfig
from .errors import describe_exception
from .oauth.errors import LoginRequired
from .upstream_http import Bodies, restored
from .upstream_stdio import stdio_transport

MAX_PAGES = 1000
"""Pages of any listing read from one upstream (tools, resources, prompts): a bound on a cursor that never ends."""
_T = TypeVar("_T")


class ClientOptions(TypedDict, total=False):
    """Keyword arguments for an upstream's SDK `Client`: `Client(transport, ..., **hooks.client_options())`."""

    sampling_callback: SamplingFnT
    elicitation_callback: ElicitationFnT
    list_roots_callback: ListRootsFnT
    """Given only to upstreams with `roots = true` (`Upstream.client_options`): the SDK declares `roots` when set."""
    logging_callback: LoggingFnT
    message_handler: MessageHandlerFnT
    log_level: types.LoggingLevel


class NobodyToAsk:
    """`Hooks` for sessions with no client behind them (`check`): sampling and elicitation are declared as
    `serve` declares them (upstreams list some tools only to clients that do), and refused if asked; roots
    (where `roots = true`) are an empty list, as `serve` answers outside any client's call."""

    def __init__(self, who: str) -> None:
        self.refusal = types.ErrorData(code=types.INVALID_REQUEST, message=f"{who} has no client to ask")

    def client_options(self) -> ClientOptions:
        return ClientOptions(sampling_callback=self._sampling, elicitation_callback=self._elicitation,
                             list_roots_callback=self._roots)

    def progress_callback(self) -> ProgressFnT | None:
        return None

    async def event(self, event: ServerEvent) -> None:
        return None

    async def _sampling(self, context: ClientRequestContext, params: types.CreateMessageRequestParams
                        ) -> types.ErrorData:
        return self.refusal

    async def _elicitation(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ErrorData:
        return self.refusal

    async def _roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[])


@dataclass
class Seen:
    """What a connection saw that explains its failure: the last HTTP error status, stdout that was not MCP."""

    status: int | None = None
    stray: str | None = None

    async def response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.status = response.status_code


@contextlib.asynccontextmanager
async def open_client(config: ServerConfig, options: ClientOptions, seen: Seen | None = None,
                      auth: httpx2.Auth | None = None) -> AsyncIterator[Client]:
    """Open an SDK `Client` for any of the three transports; `seen` records what `explain_failure` may name;
    `auth` signs streamable HTTP requests (an OAuth login)."""
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
                    headers=config.headers, timeout=httpx2.Timeout(30.0, read=300.0), follow_redirects=False, auth=auth,
                    event_hooks={"response": [(seen or Seen()).response, bodies.bound]},
                )
            )
            transport = restored(streamable_http_client(config.url, http_client=http), bodies)
        client = await stack.enter_async_context(
            Client(transport, cache=None, client_info=types.Implementation(name="mcp-gateway", version=__version__),
                   **options)
        )
        # The SDK checks a tool result against the tool's output schema in `ClientSession.validate_tool_result`
        # (called by `ClientSession.call_tool` and `Client.call_tool`), on the event loop: 175,000 small objects
        # held the whole gateway 2.6 s; and it lists the upstream's tools first if this session never did
        # (per-user sessions never do). `calls.call_tool` checks every result instead (`validation.py`: off the
        # loop, linear), so the session's own check is made a no-op. Nothing else in the SDK calls it (mcp 2.3.0):
        # re-check `validate_tool_result` and its callers on every SDK upgrade.
        client.session.validate_tool_result = _checked_by_the_gateway  # type: ignore[method-assign]
        yield client


async def _checked_by_the_gateway(name: str, result: types.CallToolResult) -> None:
    """Stands in for the SDK session's output check: see `open_client`."""


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


def where(config: ServerConfig, width: int = 60) -> str:
    """The URL, or the command line in backticks (its program's name, then its arguments, cut to `width`)."""
    if config.url is not None:
        return config.url
    assert config.command is not None
    line = "`" + " ".join([Path(config.command).name, *config.args]).replace("\n", "\\n")
    return line + "`" if len(line) < width else line[: width - 2] + "…`"


def explain_failure(config: ServerConfig, exc: BaseException | str, seen: Seen) -> str:
    """Why a connection failed, naming the URL or command, with what to try for the common causes."""
    at = where(config)
    causes = list(_chain(exc)) if isinstance(exc, BaseException) else []
    status = next((c.response.status_code for c in causes if isinstance(c, httpx2.HTTPStatusError)), seen.status)
    login = next((c for c in causes if isinstance(c, LoginRequired)), None)
    if login is not None:
        return f"{at} needs an OAuth login: {login_hint(login)}"
    if seen.stray is not None and config.kind == "stdio":
        return (f"{at} wrote something that is not MCP on stdout ({seen.stray}): a stdio server must write "
                f"only JSON-RPC there (its logs belong on stderr)")
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"nothing listens at {at}: is the server running?"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return f"the host of {at} is not found: is the address right?"
    if status == 404:
        return f"{at} answered 404: is the path right (often /mcp)?"
    if status in (401, 403):
        return f"{at} answered {status}: it needs credentials: set headers (e.g. Authorization) for this server"
    if config.kind == "stdio" and any(isinstance(c, FileNotFoundError) for c in causes):
        return f"command not found: {config.command}: is it installed, and on the PATH?"
    text = describe_exception(exc) if isinstance(exc, BaseException) else exc
    if status is not None:
        text = f"HTTP {status}: {text}"
    if config.kind == "stdio" and text == "Connection closed":
        text = "the command exited or closed its stdout (its stderr may say why)"
    return f"{at}: {text}"


def login_hint(login: LoginRequired) -> str:
    return f"{login.why}; an admin runs `mcp-gateway auth login {login.server}` and opens the link it prints"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the members of its groups and its causes, each once."""
    stack, seen = [exc], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        if (cause := item.__cause__ or item.__context__) is not None:
            stack.append(cause)
