"""Signing in to the dashboard with the organisation's provider (`[sign_in]`), for admins by group.

`/ui/provider` sends the browser to the provider (authorization code, PKCE S256, this gateway as RFC 8707
`resource`) with the gateway's own client (`sign_in.client_id` / `client_secret`); `/ui/signed-in` takes
the code back, buys the access token, checks it as every token is checked (`SignIn.claims`), and opens a
dashboard session for a caller whose groups make it an admin. The login's `state` and PKCE verifier wait in
a cookie of this browser (HttpOnly, SameSite=Lax, for `/ui`): any replica may get the answer, an answer
started in another browser (login CSRF) is refused, and starting a login writes nothing (anyone may start
one). The session keeps the token's claims, not the token: the caller is rebuilt from them at each
request, so a change of the group mapping applies at once.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import structlog
from mcp.client.auth.oauth2 import PKCEParameters
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..gateway import Gateway
from ..governance.identity import Identity
from ..oauth import SignIn, SignInUnavailable
from ..oauth.claims import identity_of
from ..oauth.sign_in import TokenRefused
from .auth import is_https, store_session

log = structlog.get_logger("mcp_gateway.dashboard")

LOGIN_COOKIE = "mgw_ui_login"
LOGIN_TTL_S = 600
KEPT_CLAIMS = ("sub", "email", "name", "preferred_username", "groups")


def provider_client(gw: Gateway) -> SignIn | None:
    """The sign-in that can log browsers in: `[sign_in]` with the gateway's own client at the provider."""
    sign_in = gw.keys.sign_in
    ready = sign_in is not None and sign_in.settings.client_id and sign_in.settings.client_secret
    return sign_in if ready else None


def redirect_uri(gw: Gateway) -> str:
    return gw.config.public_base() + "/ui/signed-in"


async def start(gw: Gateway, sign_in: SignIn, request: Request) -> Response:
    """Send the browser to the provider's login."""
    endpoint = (await sign_in.provider()).get("authorization_endpoint")
    if not isinstance(endpoint, str):
        raise SignInUnavailable(f"the provider {sign_in.settings.issuer} publishes no authorization_endpoint")
    pkce = PKCEParameters.generate()
    state = secrets.token_urlsafe(32)
    scopes = " ".join(dict.fromkeys(["openid", *sign_in.settings.scopes]))
    query = urlencode({"response_type": "code", "client_id": sign_in.settings.client_id or "", "state": state,
                       "redirect_uri": redirect_uri(gw), "code_challenge": pkce.code_challenge,
                       "code_challenge_method": "S256", "resource": sign_in.settings.resource, "scope": scopes})
    response = RedirectResponse(f"{endpoint}?{query}", status_code=303)
    # Lax: the provider's redirect back is a top-level navigation from another site
    response.set_cookie(LOGIN_COOKIE, f"{state}.{pkce.code_verifier}", max_age=LOGIN_TTL_S, path="/ui",
                        httponly=True, samesite="lax", secure=is_https(request))
    return response


async def finish(gw: Gateway, sign_in: SignIn, request: Request) -> tuple[Identity | None, str, Response | None]:
    """The caller the provider's answer names (None and why when it is refused), and the response that
    opens its session (set when it is an admin)."""
    query = request.query_params
    state, code = query.get("state", ""), query.get("code", "")
    if "error" in query:
        return None, f"the provider said: {query.get('error_description') or query['error']}", None
    started, _, verifier = request.cookies.get(LOGIN_COOKIE, "").partition(".")
    if not state or not code or not verifier or not secrets.compare_digest(state.encode(), started.encode()):
        return None, "this sign-in was not started in this browser (or took over 10 minutes): start again", None
    try:  # the code is single use at the provider
        token = await sign_in.exchange_code(code, verifier, redirect_uri(gw))
        claims = await sign_in.claims(token)
    except TokenRefused as exc:
        return None, f"the sign-in token was refused: it is {exc}", None
    mapping = gw.config.sign_in
    if mapping is None:
        return None, "signing in with the provider was switched off", None
    identity = identity_of(gw.config, mapping, claims)
    if not identity.admin:
        return identity, f"{identity.name} is in no group of the provider that [sign_in.groups] makes an admin", None
    response = RedirectResponse("./", status_code=303)
    kept: dict[str, Any] = {k: claims[k] for k in KEPT_CLAIMS if k in claims}
    groups_claim = sign_in.settings.groups_claim
    if groups_claim in claims:
        kept[groups_claim] = claims[groups_claim]
    await store_session(gw, request, response, {"claims": kept})
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    log.info("dashboard sign-in", caller=identity.name, via="provider")
    return identity, "", response
