"""The dashboard: read-only pages at `/ui` for admin keys (upstreams, calls, access, usage); see docs/dashboard.md.

Server-rendered Jinja2 templates (autoescaped: every name, argument and error from an upstream or
a script is text), one stylesheet and one small script served from this package, nothing fetched
from elsewhere; every answer carries a strict Content-Security-Policy. The script (the calls page's
live updates) asks `/ui/calls-rows` for rows rendered by the page's own template macro, so they are
escaped exactly as the page is, and every page works without it. Pages only read, so a forged
cross-site request can change nothing; the two forms (sign in, sign out) refuse cross-site posts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..gateway import Gateway
from ..governance.identity import Identity
from ..oauth import SignInUnavailable
from ..storage import StorageUnavailable
from . import auth, provider_login, usage, views

log = structlog.get_logger("mcp_gateway.dashboard")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 4096
ASSETS = {"dashboard.css": "text/css", "favicon.svg": "image/svg+xml", "calls.js": "text/javascript"}
"""The static files, served without a key (they hold no data) and named with a digest of their content
(`static/calls.js?v=...`), so a browser caching them for an hour never runs an older script with a newer page."""
LIVE_POLL_MS = 3000
"""How often a live calls page asks for newer rows."""

Page = Callable[[Request, Identity], Awaitable[Response]]


def routes(gw: Gateway, allowed_hosts: Sequence[str] | None = None) -> list[BaseRoute]:
    """`/ui` and everything under it; `allowed_hosts` (a loopback bind's `Host` patterns) guard against
    DNS rebinding as on `/healthz`."""
    env = Environment(loader=PackageLoader("mcp_gateway.dashboard", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""
    env.filters["when_ms"] = lambda ts: env.filters["when"](ts) + f".{int(ts % 1 * 1000):03d}"
    env.filters["ms"] = lambda v: f"{v:,.1f}" if v is not None else ""
    env.globals["query"] = lambda params, **extra: urlencode({**params, **{k: v for k, v in extra.items()
                                                                           if v is not None}})
    env.filters["source"] = views.script_source
    files = {name: resources.files(__package__).joinpath("static", name).read_bytes() for name in ASSETS}
    env.globals["asset"] = {name: f"static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}"
                            for name, body in files.items()}
    env.globals["live_poll_ms"] = LIVE_POLL_MS

    browser_sign_in = provider_login.provider_client(gw)
    provider_issuer = browser_sign_in.settings.issuer if browser_sign_in is not None else None

    def render(template: str, status: int = 200, **context: Any) -> Response:
        body = env.get_template(template).render(provider_issuer=provider_issuer, **context)
        return secured(HTMLResponse(body, status_code=status))

    def guarded(page: Page) -> Callable[[Request], Awaitable[Response]]:
        """Every data page: the Host check, then an admin key (header or session), else 401 or 403."""

        async def endpoint(request: Request) -> Response:
            if not _host_allowed(request, allowed_hosts):
                return secured(Response("unexpected Host header", status_code=421))
            try:
                identity = await auth.caller(gw, request)
                if identity is None:
                    return render("login.html", 401, message=None, signed_in=None)
                if not identity.admin:
                    return render("refused.html", 403, name=identity.name, signed_in=None)
                return await page(request, identity)
            except StorageUnavailable as exc:
                log.error("dashboard: store unavailable", error=str(exc))
                return render("refused.html", 503, name=None, signed_in=None)

        return endpoint

    async def upstreams_page(request: Request, identity: Identity) -> Response:
        return render("upstreams.html", upstreams=await views.upstreams(gw), signed_in=identity.name,
                      page="upstreams", events=views.EVENTS, replica=gw.replica, history_rows=views.HISTORY_ROWS)

    async def calls_page(request: Request, identity: Identity) -> Response:
        params = dict(request.query_params)
        found = await views.calls(gw, params)
        return render("calls.html", calls=found, windows=list(views.WINDOWS), signed_in=identity.name, page="calls",
                      servers=[u.name for u in gw.upstreams], keys=list(gw.config.keys), teams=list(gw.config.teams))

    async def calls_rows(request: Request, identity: Identity) -> Response:
        """A live calls page's poll: the rows after its newest, as the page's own macro renders them."""
        found = await views.calls_since(gw, request.query_params)
        if found is None:
            return secured(Response("after=<row id> is required", status_code=400))
        return render("calls_rows.html", calls=found)

    async def access_page(request: Request, identity: Identity) -> Response:
        everyone = await views.subjects(gw)
        wanted = request.query_params.get("subject")
        chosen = next((s for s in everyone if s.id == wanted), None)
        return render("access.html", summary=[views.access(gw, s) for s in everyone],
                      detail=views.access(gw, chosen) if chosen else None, signed_in=identity.name, page="access",
                      layout=gw.config.gateway.layout)

    async def usage_page(request: Request, identity: Identity) -> Response:
        return render("usage.html", usage=await usage.usage(gw, request.query_params), spans=usage.SPANS,
                      decisions=usage.DECISIONS, signed_in=identity.name, page="usage")

    async def login(request: Request) -> Response:
        if not _host_allowed(request, allowed_hosts):
            return secured(Response("unexpected Host header", status_code=421))
        if request.method == "GET":
            return render("login.html", message=None, signed_in=None)
        if auth.cross_site(request):
            return render("login.html", 403, message="refused: this form was posted from another site",
                          signed_in=None)
        body = await _small_body(request)
        secret = dict(parse_qsl(body.decode("utf-8", "replace"))).get("key", "").strip() if body is not None else ""
        try:
            identity = await gw.keys.authenticate(secret) if secret else None
            if identity is None:
                return render("login.html", 401, message="unknown or revoked key", signed_in=None)
            if not identity.admin:
                return render("login.html", 403, message=f"key {identity.name} is not an admin key (admin = true)",
                              signed_in=None)
            response = RedirectResponse("./", status_code=303)
            await auth.open_session(gw, request, secret, response)
        except StorageUnavailable as exc:
            log.error("dashboard: store unavailable", error=str(exc))
            return render("refused.html", 503, name=None, signed_in=None)
        log.info("dashboard sign-in", key=identity.name)
        return secured(response)

    async def provider(request: Request) -> Response:
        """Sign in through the organisation's provider (`[sign_in]` with the gateway's own client): `/provider`
        sends the browser there, `/signed-in` takes its answer."""
        sign_in = provider_login.provider_client(gw)
        if not _host_allowed(request, allowed_hosts) or sign_in is None:
            return render("login.html", 404, message="this gateway offers no sign-in through a provider",
                          signed_in=None)
        try:
            if request.url.path.endswith("/provider"):
                return secured(await provider_login.start(gw, sign_in, request))
            identity, why, response = await provider_login.finish(gw, sign_in, request)
        except (StorageUnavailable, SignInUnavailable) as exc:
            log.error("dashboard: provider sign-in unavailable", error=str(exc))
            return render("refused.html", 503, name=None, signed_in=None)
        if response is None:
            return render("login.html", 403 if identity is not None else 401, message=why, signed_in=None)
        return secured(response)

    async def logout(request: Request) -> Response:
        if not _host_allowed(request, allowed_hosts) or auth.cross_site(request):
            return secured(Response("refused", status_code=403))
        response = RedirectResponse("login", status_code=303)
        try:
            await auth.close_session(gw, request, response)
        except StorageUnavailable:
            return render("refused.html", 503, name=None, signed_in=None)
        return secured(response)

    async def static(request: Request) -> Response:  # the icon is named by every page: no /favicon.ico request
        name = request.url.path.rsplit("/", 1)[-1]
        response = secured(Response(files[name], media_type=ASSETS[name]))
        response.headers["Cache-Control"] = "max-age=3600"
        return response

    app = Starlette(routes=[
        Route("/", guarded(upstreams_page), methods=["GET"]),
        Route("/upstreams", guarded(upstreams_page), methods=["GET"]),
        Route("/calls", guarded(calls_page), methods=["GET"]),
        Route("/calls-rows", guarded(calls_rows), methods=["GET"]),
        Route("/access", guarded(access_page), methods=["GET"]),
        Route("/usage", guarded(usage_page), methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/provider", provider, methods=["GET"]),
        Route("/signed-in", provider, methods=["GET"]),
        *(Route(f"/static/{name}", static, methods=["GET"]) for name in ASSETS),
    ])
    return [Mount("/ui", app=app)]


def secured(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _small_body(request: Request) -> bytes | None:
    """The form's body, or None past `MAX_FORM_BYTES` (a key is some 50 characters)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return body


def _host_allowed(request: Request, allowed_hosts: Sequence[str] | None) -> bool:
    if allowed_hosts is None:
        return True
    host = request.headers.get("host", "")
    return any(host in (allowed, allowed.removesuffix(":*"))
               or (allowed.endswith(":*") and host.startswith(allowed[:-1])) for allowed in allowed_hosts)
