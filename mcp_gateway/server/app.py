"""Serving: the Starlette app (`/mcp`, `/mcp/<group>`, `/healthz`, `/metrics`), uvicorn with a graceful drain, stdio."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import structlog
import uvicorn
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, request_response

from ..config import LOOPBACK_HOSTS
from ..dashboard.routes import routes as dashboard_routes
from ..gateway import Gateway
from ..oauth import SignInUnavailable
from ..oauth.resource import metadata_routes
from ..oauth.sign_in import TokenRefused
from ..storage import StorageUnavailable
from .connections import protocol, raise_file_limit
from .encoded import Encoded
from .entry import KeyAuth, identify
from .handlers import build_server
from .oauth_callback import callback_route, deliver_login
from .sessions import SessionManager
from .shared import shared_state

log = structlog.get_logger("mcp_gateway.server")

NO_OAUTH = ("this gateway has no OAuth sign-in: it needs an API key, sent as the header "
            "'Authorization: Bearer <key>'; `mcp-gateway connect claude --key <key>` prints the command that adds it")


def build_app(gw: Gateway, *, host: str = "127.0.0.1") -> Starlette:
    """A Starlette app serving `/mcp` (streamable HTTP, both protocol eras) and `/healthz`."""
    server = build_server(gw)
    security = None
    if host in LOOPBACK_HOSTS:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    manager = SessionManager(app=server, security_settings=security, store=gw.storage,
                             max_sessions_per_key=gw.config.gateway.max_sessions_per_key)
    manager.on_closed.append(shared_state(gw).forget)
    mcp_app = KeyAuth(Encoded(StreamableHTTPASGIApp(manager)), gw.keys,
                      max_request_bytes=gw.config.gateway.max_request_bytes)

    async def healthz(request: Request) -> JSONResponse:
        """Anyone: whether the gateway serves (`ok`, or `degraded` while an enabled upstream is not ready; HTTP 200
        either way, so a load balancer keeps the instance) and how many upstreams are ready; HTTP 503 while the
        store does not answer (nothing can be served: keys cannot be checked) or this replica is not yet
        listening to the others (`starting`). An admin key: each upstream."""
        if security is not None and not _allowed_host(request, security):
            return JSONResponse({"error": "unexpected Host header"}, status_code=421)
        ready = sum(u.state == "ready" for u in gw.upstreams)
        status = "ok" if all(u.state == "ready" for u in gw.upstreams if u.config.enabled) else "degraded"
        body: dict[str, Any] = {"status": status, "upstreams_ready": ready, "upstreams": len(gw.upstreams)}
        try:
            await gw.storage.has_keys()
            identity = await identify(gw.keys, request.scope)
        except StorageUnavailable:
            return JSONResponse({**body, "status": "store unavailable"}, status_code=503)
        except (TokenRefused, SignInUnavailable):
            identity = None
        if not gw.storage.listening:  # answers to its server requests could reach another replica and be lost
            return JSONResponse({**body, "status": "starting"}, status_code=503)
        if identity is not None and identity.admin:
            body["servers"] = {u.name: u.status for u in gw.upstreams}
        return JSONResponse(body)

    async def no_oauth(request: Request) -> Response:
        """A client that found no key falls back to OAuth dynamic client registration (Claude Code prints this body)."""
        return PlainTextResponse(NO_OAUTH, status_code=404)

    async def metrics(request: Request) -> Response:
        if security is not None and not _allowed_host(request, security):
            return JSONResponse({"error": "unexpected Host header"}, status_code=421)
        for up in gw.upstreams:
            gw.metrics.upstream_up.labels(up.name).set(1 if up.state == "ready" else 0)
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    ui = dashboard_routes(gw, security.allowed_hosts if security else None) if gw.config.dashboard.enabled else []
    sign_in = gw.keys.sign_in
    oauth = metadata_routes(sign_in) if sign_in is not None else [Route("/register", no_oauth, methods=["GET", "POST"])]
    return Starlette(
        routes=[
            Route("/mcp", mcp_app),
            Route("/mcp/{group}", mcp_app),
            Route("/healthz", healthz, methods=["GET"]),
            *oauth,
            callback_route(gw),
            Route("/metrics", KeyAuth(request_response(metrics), gw.keys, admin_only=True), methods=["GET"]),
            *ui,
        ],
        lifespan=lambda app: _lifespan(manager, gw),
    )


@contextlib.asynccontextmanager
async def _lifespan(manager: SessionManager, gw: Gateway) -> AsyncIterator[None]:
    """The session manager, and what other replicas publish: answers for its sessions, logins made."""
    async def deliver(message: str) -> None:
        if not await deliver_login(gw, message):
            await manager.deliver(message)

    async with manager.run(), anyio.create_task_group() as tg:
        tg.start_soon(gw.storage.listen, deliver)
        yield
        tg.cancel_scope.cancel()


def _allowed_host(request: Request, security: TransportSecuritySettings) -> bool:
    """The DNS-rebinding check `/mcp` gets from the SDK, for the other routes of a loopback gateway."""
    host = request.headers.get("host", "")
    return any(host in (allowed, allowed.removesuffix(":*"))
               or (allowed.endswith(":*") and host.startswith(allowed[:-1])) for allowed in security.allowed_hosts)


async def serve_stdio(gw: Gateway) -> None:
    """Serve the gateway over this process's stdin/stdout."""
    server = build_server(gw)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(gw: Gateway, host: str, port: int, sockets: list[socket.socket] | None = None) -> None:
    """Serve `build_app(gw)` with uvicorn until SIGINT or SIGTERM, then shut down gracefully.

    `sockets`, already bound (`mcp_gateway.listen.bind`), are served instead of binding `host` and `port`.

    Shutdown stops accepting connections, lets the tool calls in flight finish (at most
    `gateway.shutdown_grace_s`), ends the remaining event streams, then closes the upstreams.
    """
    AppStatus.enable_automatic_graceful_drain = False  # the SDK's SSE responses would end at once otherwise
    settings = gw.config.gateway
    raise_file_limit()
    config = uvicorn.Config(build_app(gw, host=host), host=host, port=port, lifespan="on",
                            log_level="warning", log_config=None,  # our handlers, with their rate limit
                            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
                            http=protocol(settings.header_timeout_s), limit_concurrency=settings.max_connections)
    await _DrainingServer(config, gw).serve(sockets=sockets)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gw: Gateway) -> None:
        super().__init__(config)
        self.gw = gw

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._drain)
            await super().shutdown(sockets)

    async def _drain(self) -> None:
        with anyio.move_on_after(self.gw.config.gateway.shutdown_grace_s):
            await self.gw.wait_idle()
        if self.gw.calls_in_flight:
            log.warning("shutting down with tool calls in flight", calls=self.gw.calls_in_flight)
        else:
            await anyio.sleep(0.25)  # let the last results reach their clients before the streams end
        AppStatus.should_exit = True  # ends the event streams still open (idle GET streams)
