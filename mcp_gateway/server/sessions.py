"""Client connections: one key per connection, the HTTP sessions of each API key, and state kept per connection.

One API key cannot take the gateway's room from the others: it opens at most `max_sessions_per_key`
HTTP sessions, and every table kept per connection (list-change watchers, log listeners) holds at
most `PER_KEY` of its connections, evicting its own oldest first. When an HTTP session ends (the
client's DELETE, or idle expiry), what was kept for it is forgotten at once.

A 2025-11-25 session is also written to the store when it opens (its owner, protocol version and
the client's `initialize` params), so a request for it that reaches another replica continues it
there: that replica opens the session with the same id, already initialized, for the same caller
only. A client's DELETE removes it from the store. A client's answer to a server request
(an elicitation, a sampling request, an approval) may reach another replica than the call that
asked: each replica publishes the answers it receives through the store, and every replica
serving that session hands them to its own connection, where the call waiting for it takes it
(the others find no request of that id and drop it). Continued sessions number their server
requests from a random point, so two replicas' requests in one session never share an id.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import anyio
import mcp_types as types
import structlog
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from starlette.types import Message, Receive, Scope, Send

from ..storage import SharedSession, Storage, StorageUnavailable

log = structlog.get_logger("mcp_gateway.sessions")

V = TypeVar("V")

PER_KEY = 64
"""Connections of one API key remembered by each per-connection table."""
TOTAL = 10_000
"""Connections remembered by each per-connection table, all keys together."""
NEW_SESSION_SCOPE_KEY = "mcp_gateway.new_session"
"""Where the opening request's scope carries the id of the session it opens."""


def session_key(ctx: ServerRequestContext[Any]) -> str:
    """Its HTTP session id, the session object of a stateless request, or the single stdio client."""
    if ctx.request is None:
        return "stdio"
    session_id = ctx.request.headers.get("mcp-session-id")
    return f"http:{session_id}" if session_id else f"session:{id(ctx.session)}"


class PerKey(Generic[V]):
    """Values by connection, at most `per_key` connections of one key (its oldest go first) and `total` in all."""

    def __init__(self, per_key: int = PER_KEY, total: int = TOTAL) -> None:
        self.per_key = per_key
        self.total = total
        self._items: OrderedDict[str, tuple[str, V]] = OrderedDict()

    def put(self, connection: str, key: str, value: V) -> None:
        self._items.pop(connection, None)
        mine = [c for c, (k, _) in self._items.items() if k == key]
        for old in mine[: max(0, len(mine) - self.per_key + 1)]:
            del self._items[old]
        while len(self._items) >= self.total:
            self._items.popitem(last=False)
        self._items[connection] = (key, value)

    def get(self, connection: str) -> V | None:
        found = self._items.get(connection)
        return None if found is None else found[1]

    def pop(self, connection: str) -> None:
        self._items.pop(connection, None)

    def items(self) -> list[tuple[str, V]]:
        return [(c, v) for c, (_, v) in self._items.items()]

    def __len__(self) -> int:
        return len(self._items)


class SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, with a cap on sessions per key, a hook for sessions that end, and
    sessions continued from the store (`store`) when another process opened them."""

    def __init__(self, *args: Any, max_sessions_per_key: int, store: Storage | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_sessions_per_key = max_sessions_per_key
        self.store = store
        self.on_closed: list[Callable[[str], None]] = []

    async def _handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = dict(scope.get("headers", [])).get(b"mcp-session-id", b"").decode("latin-1") or None
        if session_id is not None and self.store is not None:
            if session_id not in self._server_instances:
                await self._resume(session_id, scope)
            if scope.get("method") == "POST":
                body = await _read_body(receive)
                if _is_answer(body) and self._session_owners.get(session_id) == _requestor(scope):
                    await self._publish(session_id, body)  # only the session's own caller answers its requests
                receive = _replay(body, receive)
        await super()._handle_request(scope, receive, send)
        if session_id is not None and self.store is not None and scope.get("method") == "DELETE":
            try:
                await self.store.drop_session(session_id)
            except StorageUnavailable as exc:
                log.warning("ended session not removed from the store", error=str(exc))

    def _has_room(self, requestor: AuthorizationContext | None) -> bool:
        if requestor is None:
            return True
        owners = self._session_owners.values()
        return sum(o["client_id"] == requestor["client_id"] for o in owners) < self.max_sessions_per_key

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        if not self._has_room(requestor):
            return None  # answered 503 "Too many open sessions", as at the global limit
        return super()._admit_session(requestor)

    async def _serve_opening_request(self, http_transport: StreamableHTTPServerTransport, scope: Scope,
                                     receive: Receive, send: Send) -> None:
        scope[NEW_SESSION_SCOPE_KEY] = http_transport.mcp_session_id  # for `remember_session`
        await super()._serve_opening_request(http_transport, scope, receive, send)

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        await super()._discard_session(session_id, transport)
        for forget in list(self.on_closed):
            forget(f"http:{session_id}")

    async def _publish(self, session_id: str, body: bytes) -> None:
        assert self.store is not None
        try:
            await self.store.publish(json.dumps({"session": session_id, "body": body.decode()}))
        except (StorageUnavailable, UnicodeDecodeError) as exc:
            log.warning("an answer to a server request was not shared with the other replicas", error=str(exc))

    async def deliver(self, message: str) -> None:
        """An answer published by a replica (this one too): hand it to this replica's connection of its session."""
        try:
            found = json.loads(message)
            session_id, body = str(found["session"]), str(found["body"]).encode()
        except (ValueError, KeyError, TypeError):
            return
        transport = self._server_instances.get(session_id)
        if transport is None or transport.is_terminated:
            return
        headers = [(b"host", b"127.0.0.1:0"), (b"content-type", b"application/json"),
                   (b"accept", b"application/json, text/event-stream"), (b"mcp-session-id", session_id.encode()),
                   (b"content-length", str(len(body)).encode())]
        scope: Scope = {"type": "http", "method": "POST", "path": "/mcp", "raw_path": b"/mcp", "query_string": b"",
                        "headers": headers, "scheme": "http", "http_version": "1.1", "client": ("127.0.0.1", 0),
                        "server": ("127.0.0.1", 0)}

        async def discard(message: Message) -> None:
            pass  # the 202 for a POST nobody made

        with anyio.move_on_after(5):
            await transport.handle_request(scope, _replay(body, _never), discard)

    async def _resume(self, session_id: str, scope: Scope) -> None:
        """Open `session_id` here if the store has it for this caller; otherwise leave it unknown (404)."""
        assert self.store is not None and self._task_group is not None
        requestor = _requestor(scope)
        try:
            found = await self.store.find_session(session_id)
        except StorageUnavailable as exc:
            log.warning("session not continued: the store is unavailable", error=str(exc))
            return
        if found is None or found.owner != _owner(requestor):
            return  # as if it did not exist: another key's session is not continued for this one
        async with self._session_creation_lock:
            if session_id in self._server_instances or not self._has_room(requestor):
                return
            if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
                return
            transport = StreamableHTTPServerTransport(
                mcp_session_id=session_id, is_json_response_enabled=self.json_response, event_store=self.event_store,
                security_settings=self.security_settings, retry_interval=self.retry_interval,
                idle_timeout=self.session_idle_timeout,
            )
            if requestor is not None:
                self._session_owners[session_id] = requestor
            self._server_instances[session_id] = transport
        params = types.InitializeRequestParams.model_validate(json.loads(found.client))
        await self._task_group.start(self._serve_resumed, transport, found.protocol_version, params)
        log.info("session continued from the store", session=session_id[:8])

    async def _serve_resumed(self, transport: StreamableHTTPServerTransport, version: str,
                             params: types.InitializeRequestParams, *,
                             task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve a continued session as the SDK serves one it opened, but born initialized."""
        session_id = transport.mcp_session_id
        assert session_id is not None
        async with transport.connect() as (read_stream, write_stream):
            task_status.started()
            try:
                dispatcher = _Dispatcher(read_stream, write_stream, inline_methods=frozenset({"initialize"}))
                connection = Connection.for_loop(dispatcher, session_id=session_id, protocol_version_hint=version)
                connection.client_params = params
                connection.initialized.set()
                with transport.idle_scope or anyio.CancelScope():
                    await serve_connection(self.app, dispatcher, connection=connection,
                                           lifespan_state=self._lifespan_state)
            except Exception as exc:
                log.error("continued session crashed", session=session_id[:8], error=str(exc))
            finally:
                await self._discard_session(session_id, transport)


class _Dispatcher(JSONRPCDispatcher[TransportContext]):
    """Numbers its requests to the client from a random point: the replica that opened the session counts
    from 1, and each replica continuing it must not reuse an id another has pending."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_id = secrets.randbelow(2**52) + 2**32

    def _allocate_id(self) -> int:
        self._next_id += 1
        return self._next_id


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` with the body already read given back first."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _never() -> Message:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def _is_answer(body: bytes) -> bool:
    """Whether a POST body holds JSON-RPC responses (answers to the server's requests), not requests."""
    if b'"result"' not in body and b'"error"' not in body:  # most requests are never parsed here
        return False
    try:
        found = json.loads(body)
    except ValueError:
        return False
    items = found if isinstance(found, list) else [found]
    return bool(items) and all(isinstance(i, dict) and "id" in i and ("result" in i or "error" in i) for i in items)


async def remember_session(store: Storage, ctx: ServerRequestContext[Any], result: object) -> None:
    """After an `initialize` that opened an HTTP session: write it to the store for other replicas."""
    scope = getattr(ctx.request, "scope", None)
    if not isinstance(scope, dict):
        return
    session_id = scope.get(NEW_SESSION_SCOPE_KEY)
    version = result.get("protocolVersion") if isinstance(result, Mapping) else None
    if not isinstance(session_id, str) or not isinstance(version, str) or not isinstance(ctx.params, Mapping):
        return
    session = SharedSession(session_id, _owner(_requestor(scope)), version, json.dumps(dict(ctx.params), default=str))
    try:
        await store.save_session(session)
    except StorageUnavailable as exc:
        log.warning("session not shared: it continues only on this replica", error=str(exc))


def _requestor(scope: Scope) -> AuthorizationContext | None:
    """Who sent the request, as the SDK compares session owners (`KeyAuth` sets the user)."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


def _owner(requestor: AuthorizationContext | None) -> str:
    return json.dumps(requestor, sort_keys=True)
