"""Upstream traffic relayed to the client whose request caused it: progress, log messages, sampling,
elicitation and roots.

Where a request enters, `Relay.serving` records it as the call in flight (in a context variable
and in a list). The SDK runs an upstream's callbacks in the context of the call that caused them
(2026-07-28 upstreams, and handshake-era upstreams over streamable HTTP). Over stdio a
handshake-era upstream's requests arrive outside any call: they go to the one call in flight
that may use that upstream, or are refused. Log messages outside any call go to every client
that asked for logs (`logging/setLevel`) and may use the upstream.

Roots are held to a stricter rule, because an upstream may keep them as the state of a session
that serves every client: a `roots/list` the gateway cannot pin on one call (at connect, on the
upstream's own initiative) is answered with an empty list, never with some client's roots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mcp_types as types
import structlog
from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import ValidationError

from ..codemode import META_NAMES
from ..errors import describe_exception
from ..gateway import Gateway
from ..governance.identity import Identity
from ..governance.rounds import Round, current_round, digest_of
from .requests import ask, handshake_era, may_access, serves, visible
from .sessions import PerKey, session_key

log = structlog.get_logger("mcp_gateway.relay")

LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
CALL_METHODS = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
"""Requests during which an upstream may send traffic for the client."""


@dataclass(eq=False)
class DownstreamCall:
    """A client request in flight whose upstream traffic is relayed back to that client."""

    relay: Relay
    ctx: ServerRequestContext[Any]
    identity: Identity
    relay_progress: bool
    round: Round | None = None
    """A 2026-07-28 client's round: its upstream's questions are asked through the client's retry."""
    upstreams: set[str] = field(default_factory=set)
    """Upstreams whose tools this call has called: a `roots/list` outside any call's context is pinned
    on a call only if it is calling that upstream (see `Relay.roots`)."""

    @property
    def related(self) -> ServerMessageMetadata:
        return ServerMessageMetadata(related_request_id=self.ctx.request_id)


_R = TypeVar("_R", bound=types.Result)
_Question = types.CreateMessageRequest | types.ElicitRequest | types.ListRootsRequest
_current_call: ContextVar[DownstreamCall | None] = ContextVar("mcp_gateway_downstream_call", default=None)


@dataclass(eq=False)
class _Listener:
    """A client session that asked for log messages (`logging/setLevel`)."""

    session: ServerSession
    identity: Identity
    level: types.LoggingLevel = "debug"


class Relay:
    """The calls in flight on one gateway, and the clients listening for log messages."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.active: list[DownstreamCall] = []
        self.listeners: PerKey[_Listener] = PerKey()
        self.upstream_levels: dict[str, types.LoggingLevel] = {}

    @contextlib.contextmanager
    def serving(self, ctx: ServerRequestContext[Any], identity: Identity) -> Iterator[None]:
        """Record a client request as the call in flight, if it is one that upstream traffic can belong to."""
        if ctx.request_id is None or ctx.method not in CALL_METHODS:
            yield
            return
        name = (ctx.params or {}).get("name")
        relay_progress = (ctx.method == "tools/call" and name not in META_NAMES
                          and ctx.meta is not None and ctx.meta.get("progress_token") is not None)
        call = DownstreamCall(self, ctx, identity, relay_progress, current_round())
        token = _current_call.set(call)
        self.active.append(call)
        try:
            yield
        finally:
            self.active.remove(call)
            _current_call.reset(token)

    def route(self, server: str) -> DownstreamCall | None:
        """The client call an upstream's request belongs to (see the module docstring)."""
        call = _current_call.get()
        if call is not None and call.relay is self:
            return call
        candidates = [c for c in self.active if may_access(c.identity, self.gw.upstream(server))]
        return candidates[0] if len(candidates) == 1 else None

    def progress_callback(self, server: str) -> ProgressFnT | None:
        """Relay an upstream tool's progress to the client's progress token (direct tool calls only).

        Asked just before each upstream tool call, in the calling client's context: the call is also
        noted as one that uses `server` (see `roots`)."""
        call = _current_call.get()
        if call is None or call.relay is not self:
            return None
        call.upstreams.add(server)
        return call.ctx.session.report_progress if call.relay_progress else None

    async def sampling(
        self, server: str, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        request = types.CreateMessageRequest(params=params.model_copy(update={"meta": None}))
        if params.tools is not None or params.tool_choice is not None:
            return await self._ask_client(server, "sampling", request, types.CreateMessageResultWithTools)
        return await self._ask_client(server, "sampling", request, types.CreateMessageResult)

    async def elicitation(self, server: str, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        request = types.ElicitRequest(params=params.model_copy(update={"meta": None}))
        return await self._ask_client(server, "elicitation", request, types.ElicitResult)

    async def roots(self, server: str, session: object) -> types.ListRootsResult | types.ErrorData:
        """The roots of the client whose call an upstream's `roots/list` (on `session`) belongs to.

        An empty list when it belongs to no call the gateway can name, or the client did not declare
        `roots`: the upstream then works as without roots, rather than with another client's.
        """
        call = self._roots_call(server, session)
        caps = call.ctx.session.client_capabilities if call is not None else None
        if call is None or caps is None or caps.roots is None:
            return types.ListRootsResult(roots=[])
        return await self._ask(call, server, "roots", types.ListRootsRequest(), types.ListRootsResult)

    def _roots_call(self, server: str, session: object) -> DownstreamCall | None:
        """`route`, stricter: a call whose context the request came in must still be in flight (a session
        opened during a call keeps that call's context), and a request outside any call's context (a
        handshake-era upstream over stdio) must come on the upstream's shared session once it is ready (not
        at connect, nor on a caller's own session) while exactly one call that may use the upstream is in
        flight, and that call has called the upstream's tools."""
        call = _current_call.get()
        if call is not None and call.relay is self:
            return call if call in self.active else None
        up = self.gw.upstream(server)
        shared = up.client
        if shared is None or shared.session is not session:
            return None
        candidates = [c for c in self.active if may_access(c.identity, up)]
        return candidates[0] if len(candidates) == 1 and server in candidates[0].upstreams else None

    async def _ask_client(self, server: str, what: str, request: types.CreateMessageRequest | types.ElicitRequest,
                          result_type: type[_R]) -> _R | types.ErrorData:
        """Send an upstream's request on to the client whose call it belongs to; any failure as an error."""
        call = self.route(server)
        refusal = _cannot_ask(call, what, server)
        if refusal is not None or call is None:
            return refusal or _error("no client")
        return await self._ask(call, server, what, request, result_type)

    @staticmethod
    async def _ask(call: DownstreamCall, server: str, what: str, request: _Question,
                   result_type: type[_R]) -> _R | types.ErrorData:
        """Ask the calling client: mid-call (2025-11-25), or through its retry (2026-07-28)."""
        if call.round is not None:
            return _through_retry(call.round, server, what, request, result_type)
        try:
            return await call.ctx.session.send_request(request, result_type, metadata=call.related)
        except MCPError as exc:
            return exc.error
        except ValidationError as exc:
            return _error(f"the client's {what} answer is invalid: {describe_exception(exc)}")

    def forget(self, connection: str) -> None:
        """The client connection ended: it listens no more."""
        self.listeners.pop(connection)

    # ---- logging ------------------------------------------------------------------------------

    async def set_level(self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Remember the client's level; lower the upstreams' level (shared by all clients) when needed."""
        identity = self.gw.identity
        key = session_key(ctx)
        self.listeners.put(key, identity.principal, _Listener(ctx.session, identity, params.level))
        request = types.SetLevelRequest(params=types.SetLevelRequestParams(level=params.level))
        for up in visible(self.gw, identity):
            current = self.upstream_levels.get(up.name)
            if not handshake_era(up) or not serves(up, "logging"):
                continue
            if current is not None and LEVELS.index(current) <= LEVELS.index(params.level):
                continue
            try:
                await ask(self.gw, up, lambda c: c.session.send_request(request, types.EmptyResult))
                self.upstream_levels[up.name] = params.level
            except MCPError as exc:
                log.warning("upstream refused logging/setLevel", server=up.name, error=exc.message)
        return types.EmptyResult()

    async def log_message(self, server: str, params: types.LoggingMessageNotificationParams) -> None:
        """To the client whose call caused it; otherwise to every client that asked for logs and may see it."""
        logger = f"{server}.{params.logger}" if params.logger else server
        relayed = types.LoggingMessageNotificationParams(level=params.level, data=params.data, logger=logger)
        call = self.route(server)
        if call is not None:
            listener = self.listeners.get(session_key(call.ctx))
            if listener is not None and LEVELS.index(params.level) < LEVELS.index(listener.level):
                return
            if params.level in allowed_log_levels(call.ctx.protocol_version, call.ctx.meta):
                await _notify(call.ctx.session, relayed, call.ctx.request_id)
            return
        for key, listener in list(self.listeners.items()):
            wanted = LEVELS.index(params.level) >= LEVELS.index(listener.level)
            if wanted and may_access(listener.identity, self.gw.upstream(server)):
                try:
                    await _notify(listener.session, relayed, None)
                except Exception:
                    self.listeners.pop(key)


def _error(message: str) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message=f"mcp-gateway: {message}")


def _through_retry(current: Round, server: str, what: str, request: _Question,
                   result_type: type[_R]) -> _R | types.ErrorData:
    """A 2026-07-28 client: the answer its retry brought, or the question recorded for the input-required
    result (the upstream's request fails now; the call is made again on the retry, and answered then)."""
    body = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    question = digest_of(what, body)
    answer = current.answers.get(question)
    if answer is not None:
        try:
            return result_type.model_validate(answer)
        except ValidationError as exc:
            return _error(f"the client's {what} answer is invalid: {describe_exception(exc)}")
    current.ask(f"{server}/{what}/{question[-12:]}", body, question)
    return _error(f"{server} asked for {what}: the client answers on its retry of this call")


def _cannot_ask(call: DownstreamCall | None, what: str, server: str) -> types.ErrorData | None:
    if call is None:
        return _error(f"{server} asked for {what} outside any client call the gateway can attribute it to")
    caps = call.ctx.session.client_capabilities
    if caps is None or getattr(caps, what, None) is None:
        return _error(f"{server} asked for {what}, and the gateway's client does not support it")
    return None


async def _notify(session: ServerSession, params: types.LoggingMessageNotificationParams,
                  related: types.RequestId | None) -> None:
    await session.send_notification(types.LoggingMessageNotification(params=params), related_request_id=related)
