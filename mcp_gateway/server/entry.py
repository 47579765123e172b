"""Where every request enters, and the one place its caller is decided.

Over HTTP, `KeyAuth` (ASGI middleware on the `/mcp` routes) turns `Authorization: Bearer <key>` or
`X-API-Key` into an `Identity`, or answers 401; over stdio the key comes from `MCP_GATEWAY_KEY`.
Then `Entry` (the MCP server's middleware) binds that identity to the request, with the way to
ask its user for approvals and its record as a call in flight, for everything downstream.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import mcp_types as types
import structlog
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..gateway import Gateway
from ..governance.approvals import APPROVAL_INPUT, Approver, approval_request, approval_state, asking, given_answer
from ..governance.identity import NOBODY, OPEN, Identity, acting_as
from ..governance.keys import KEY_PREFIX, KeyRing
from ..governance.links import opening_links
from ..governance.rounds import InputNeeded, round_of, serving_round
from ..oauth import SignIn, SignInUnavailable
from ..oauth.claims import identity_of
from ..oauth.resource import www_authenticate
from ..oauth.sign_in import TokenRefused
from ..storage import StorageUnavailable
from .relay import CALL_METHODS, Relay
from .sessions import remember_session

log = structlog.get_logger("mcp_gateway.entry")

IDENTITY_SCOPE_KEY = "mcp_gateway.identity"
DISCONNECTED_SCOPE_KEY = "mcp_gateway.disconnected"


class KeyAuth:
    """ASGI middleware for `/mcp` routes: 401 with a JSON-RPC error for a missing or unknown key.

    The identity is also set as the request's authenticated user, so the SDK binds each HTTP
    session to the key (and endpoint) that opened it: another key presenting the session id gets
    404, as for a session that does not exist. With `admin_only`, a key that is not an admin
    key gets 403.
    """

    def __init__(self, app: ASGIApp, keys: KeyRing, *, admin_only: bool = False,
                 max_request_bytes: int | None = None) -> None:
        self.app = app
        self.keys = keys
        self.admin_only = admin_only
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            identity = await identify(self.keys, scope)
        except StorageUnavailable as exc:
            log.error("key store unavailable: request refused", error=str(exc))
            await _reject(send, 503, "the gateway cannot check API keys right now (its store is unavailable); "
                          "try again shortly", retry_after=1)
            return
        except SignInUnavailable as exc:
            log.error("sign-in provider unavailable: request refused", error=str(exc))
            await _reject(send, 503, "the gateway cannot check sign-in tokens right now (the identity provider "
                          "does not answer); try again shortly", retry_after=1)
            return
        except TokenRefused as exc:
            log.info("sign-in token refused", reason=str(exc))
            await _reject(send, 401, f"the sign-in token was refused: it is {exc}; sign in again",
                          sign_in=self.keys.sign_in, refused=str(exc))
            return
        if identity is None and self.keys.is_open():
            await _reject(send, 401, "this gateway has no API keys yet and does not let callers in without one: "
                          "create a key with `mcp-gateway keys create <name> --groups <group>`, or, for a gateway "
                          "only you use on this machine, set `anonymous = true` under [gateway]")
            return
        if identity is None and self.keys.sign_in is not None:
            await _reject(send, 401, "sign in with your organisation's identity provider (your MCP client does this "
                          "when it follows this answer's WWW-Authenticate header), or send an API key as "
                          "`Authorization: Bearer <key>`", sign_in=self.keys.sign_in)
            return
        if identity is None:
            await _reject(send, 401, "missing, unknown or revoked API key: this gateway needs a key, sent as the "
                          "header `Authorization: Bearer <key>` (`mcp-gateway connect claude --key <key>` prints the "
                          "command that adds it); an admin creates a key with `mcp-gateway keys create <name>`")
            return
        if self.admin_only and not identity.admin:
            await _reject(send, 403, f"key {identity.name} is not an admin key (admin = true)")
            return
        limit = self.max_request_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, 413, f"the request is {int(declared)} bytes, more than this gateway takes "
                          f"({limit}, gateway.max_request_bytes): send smaller arguments or a shorter script")
            return
        group = scope.get("path_params", {}).get("group")
        if group is not None:
            groups = self.keys.config.groups  # the config as (re)loaded
            if group not in groups:
                await _reject(send, 404, f"no tool group named {group!r}")
                return
            identity = identity.at_endpoint(group, groups[group].tools)
        scope[IDENTITY_SCOPE_KEY] = identity
        endpoint = f"/mcp/{group}" if group is not None else "/mcp"
        owner = identity.principal  # a key and a user of the same name never share sessions
        scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=owner, scopes=[], subject=endpoint))
        disconnected = scope[DISCONNECTED_SCOPE_KEY] = anyio.Event()

        received = 0

        async def watched() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request" and limit is not None:
                received += len(message.get("body", b""))
                if received > limit:  # a body without Content-Length that runs long: end it here
                    message = {"type": "http.disconnect"}
            if message["type"] == "http.disconnect":
                disconnected.set()
            return message

        await self.app(scope, watched, send)


async def identify(keys: KeyRing, scope: Scope) -> Identity | None:
    """The identity of an HTTP request's key or sign-in token, or None when it presents neither.

    While no key exists, an HTTP caller without one is the local admin (`OPEN`) only where the
    config says so (`gateway.anonymous`): behind a reverse proxy every request comes from
    loopback, so "no keys" alone must never mean "everyone". A token of the sign-in provider that
    is not valid raises `TokenRefused`; a provider that cannot say raises `SignInUnavailable`.
    """
    if await keys.refresh():
        return OPEN if keys.config.gateway.anonymous else None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    secret = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "").strip()
    if not secret:
        return None
    mapping, sign_in = keys.config.sign_in, keys.sign_in
    if mapping is None or sign_in is None:  # no signing in (or a reload took `[sign_in]` out: tokens refused)
        return await keys.authenticate(secret)
    if secret.count(".") == 2:  # a JWT: API keys hold no dots (no store query for it)
        return identity_of(keys.config, mapping, await sign_in.claims(secret))
    found = await keys.authenticate(secret)
    if found is None and sign_in.settings.tokens == "introspection" and not secret.startswith(KEY_PREFIX):
        return identity_of(keys.config, mapping, await sign_in.claims(secret))
    return found


async def caller(gw: Gateway, ctx: ServerRequestContext[Any]) -> Identity:
    """Who sent an MCP request: over HTTP the identity `KeyAuth` attached, over stdio the local caller."""
    if ctx.request is not None:
        scope = getattr(ctx.request, "scope", None)
        found = scope.get(IDENTITY_SCOPE_KEY) if isinstance(scope, dict) else None
        return found if isinstance(found, Identity) else NOBODY
    secret = os.environ.get("MCP_GATEWAY_KEY", "")  # no headers over stdio
    try:
        if await gw.keys.refresh():
            return OPEN
        return (await gw.keys.authenticate(secret) if secret else None) or NOBODY
    except StorageUnavailable as exc:
        log.error("key store unavailable: request refused", error=str(exc))
        return NOBODY


class Entry:
    """The MCP server's middleware: decide the caller once, and bind it for the whole request.

    A call whose HTTP connection goes away is cancelled (a script stops, its upstream call is
    cancelled and audited as such): the 2026-07-28 transport does this itself, and for
    handshake-era sessions `KeyAuth` notices the disconnect.
    """

    def __init__(self, gw: Gateway, relay: Relay) -> None:
        self.gw = gw
        self.relay = relay

    async def __call__(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        identity = await caller(self.gw, ctx)
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        approver = _input_approver(ctx) if modern else _elicitation_approver(ctx)
        caps = ctx.session.client_capabilities
        links = caps is not None and caps.elicitation is not None and caps.elicitation.url is not None
        with acting_as(identity), asking(approver), serving_round(round_of(ctx.params) if modern else None), \
                self.relay.serving(ctx, identity), opening_links(links):
            scope = getattr(ctx.request, "scope", None)
            gone = scope.get(DISCONNECTED_SCOPE_KEY) if isinstance(scope, dict) else None
            if ctx.method == "initialize":
                result = await call_next(ctx)
                await remember_session(self.gw.storage, ctx, result)
                return result
            if not isinstance(gone, anyio.Event) or ctx.method not in CALL_METHODS:
                return await call_next(ctx)
            return await _unless_gone(gone, call_next, ctx)


async def _unless_gone(gone: anyio.Event, call_next: CallNext, ctx: ServerRequestContext[Any]) -> HandlerResult:
    """`call_next(ctx)`, cancelled if `gone` is set first; the handler's own error is raised as it is."""
    try:
        async with anyio.create_task_group() as tg:

            async def cancel_when_gone() -> None:
                await gone.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_when_gone)
            result = await call_next(ctx)
            tg.cancel_scope.cancel()
            return result
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    raise MCPError(types.INTERNAL_ERROR, "the client went away: the request was cancelled")


def _elicitation_approver(ctx: ServerRequestContext[Any]) -> Approver:
    """Ask the user of the requesting session with a form elicitation that has no fields."""

    async def approve(message: str) -> str:
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            return "unsupported"
        try:
            # on the call's own response stream: the replica serving the call holds it, whichever holds the GET stream
            answer = await ctx.session.elicit_form(message, {"type": "object", "properties": {}},
                                                   related_request_id=ctx.request_id)
        except NoBackChannelError:
            return "unsupported"
        return answer.action

    return approve


def _input_approver(ctx: ServerRequestContext[Any]) -> Approver:
    """A 2026-07-28 client: the answer comes with the call's retry (`inputResponses`), or is asked for."""

    async def approve(message: str) -> str:
        known = given_answer(message)
        if known is not None:
            return known
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            return "unsupported"
        raise InputNeeded({APPROVAL_INPUT: approval_request(message)}, {APPROVAL_INPUT: approval_state(message)})

    return approve


async def _reject(send: Send, status: int, message: str, retry_after: int | None = None, *,
                  sign_in: SignIn | None = None, refused: str | None = None) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", www_authenticate(sign_in, refused).encode()))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
