"""`/oauth/callback`: where an upstream's authorization server sends the browser back after a login.

Any replica may receive it: the login's code verifier is in the store (`oauth/login.py`). Once the tokens
are stored, every replica is told (the store's publish), and the upstream that waited for a shared login
reconnects at once. The page says what happened in words, holds no script, and tells the browser not to
send this URL (it carries the code) anywhere as a referrer.
"""

from __future__ import annotations

import contextlib
import html
import json

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ..gateway import Gateway
from ..oauth.errors import LoginError
from ..oauth.login import finish_login
from ..storage import StorageUnavailable

log = structlog.get_logger("mcp_gateway.oauth")

HEADERS = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'", "cache-control": "no-store",
           "referrer-policy": "no-referrer", "x-content-type-options": "nosniff"}
LOGIN_MESSAGE = "oauth-login"


def callback_route(gw: Gateway) -> Route:
    async def callback(request: Request) -> HTMLResponse:
        query = request.query_params
        if gw.grants is None:
            return _page(404, "No OAuth logins here", "This gateway has no upstream that uses OAuth.")
        if "error" in query:
            said = query.get("error_description") or query["error"]
            return _page(400, "Login not completed", f"The authorization server said: {said}. Ask for a new link "
                         "(call the tool again, or run `mcp-gateway auth login` again) and try once more.")
        state, code = query.get("state"), query.get("code")
        if not state or not code:
            return _page(400, "Not a login answer", "This address is where logins come back to; it needs the "
                         "`code` and `state` the authorization server adds.")
        try:
            server, owner = await finish_login(gw.grants, state, code, query.get("iss"))
        except LoginError as exc:
            log.warning("oauth login not completed", error=str(exc))
            return _page(400, "Login not completed", str(exc))
        except StorageUnavailable:
            return _page(503, "Try again shortly", "The gateway's store does not answer; open the link again "
                         "in a moment.")
        log.info("oauth login completed", server=server, owner=owner or "shared")
        with contextlib.suppress(StorageUnavailable):  # else the upstream finds the login at its next attempt
            await gw.storage.publish(json.dumps({LOGIN_MESSAGE: server}))
        who = "every caller of the gateway" if owner == "" else "your calls"
        return _page(200, f"Logged in to {server}", f"The gateway now reaches {server} for {who}. You can close "
                     "this tab and go back to your client (retry the call that asked for this login).")

    return Route("/oauth/callback", callback, methods=["GET"])


def _page(status: int, title: str, text: str) -> HTMLResponse:
    body = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>")
    return HTMLResponse(body, status_code=status, headers=HEADERS)


async def deliver_login(gw: Gateway, message: str) -> bool:
    """A login published by a replica (this one too): retry the upstream that waited for it. True if it was one."""
    try:
        found = json.loads(message)
    except ValueError:
        return False
    if not isinstance(found, dict) or LOGIN_MESSAGE not in found:
        return False
    for up in gw.upstreams:
        if up.name == found[LOGIN_MESSAGE] and up.state != "ready":
            up.retry_now()
    return True
