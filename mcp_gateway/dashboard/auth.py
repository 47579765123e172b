"""Who may read the dashboard: an admin key, sent as a header or exchanged once for a session cookie.

A browser cannot add `Authorization` to the pages it loads, so `/ui/login` takes the admin key in
a POST form (never in a URL), checks it as every request's key is checked (`KeyRing.authenticate`),
and answers with a cookie holding a random session token: `HttpOnly`, `SameSite=Strict`, `Path=/ui`,
`Secure` over HTTPS. The store keeps only the token's SHA-256 and the key's hash (the `state`
table, so every replica knows the session, and a restart keeps it); the key itself is kept nowhere.

Each request resolves the session's key again: a key revoked, removed from the config or no
longer `admin` loses the dashboard at its next page, as it loses `/metrics`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..gateway import Gateway
from ..governance.identity import Identity, identity_for
from ..governance.keys import config_key_hash, hash_key, matches
from ..oauth import SignInUnavailable
from ..oauth.claims import identity_of
from ..oauth.sign_in import TokenRefused
from ..server.entry import identify
from ..storage import StorageUnavailable

COOKIE = "mgw_ui"
STATE_PREFIX = "ui-session:"
OWNER = "dashboard"


async def caller(gw: Gateway, request: Request) -> Identity | None:
    """The identity of a dashboard request: its key header, else its session cookie; None for neither.

    Raises `StorageUnavailable` when the store (or the sign-in provider) cannot say (the caller answers 503)."""
    try:
        identity = await identify(gw.keys, request.scope)
    except TokenRefused:
        identity = None
    except SignInUnavailable as exc:
        raise StorageUnavailable(str(exc)) from None
    if identity is not None:
        return identity
    token = request.cookies.get(COOKIE, "")
    return await session_identity(gw, token) if token else None


async def session_identity(gw: Gateway, token: str) -> Identity | None:
    """The key behind a session token as it is now (None if the session expired or the key is gone)."""
    body = await gw.storage.get_state(STATE_PREFIX + hash_key(token), OWNER)
    if body is None:
        return None
    found_body = json.loads(body)
    claims = found_body.get("claims")
    if isinstance(claims, dict):  # opened through the provider: the caller as the mapping makes it now
        settings = gw.config.sign_in
        if settings is None or not isinstance(claims.get("sub"), str):
            return None  # sign-in switched off since: its sessions end
        return identity_of(gw.config, settings, claims)
    key_hash = str(found_body.get("key", ""))
    config = gw.config
    found: Identity | None = None
    for name, k in config.keys.items():  # every entry is compared, as in `KeyRing.authenticate`
        if matches(config_key_hash(k), key_hash):
            found = identity_for(config, name, k.team, k.groups, k.remove_groups, k.deny, k.admin)
    if found is not None:
        return found
    row = await gw.storage.find_key(key_hash)  # active keys only: a revoked key's session ends here
    return None if row is None else identity_for(config, row.name, row.team, row.groups, admin=row.admin)


async def open_session(gw: Gateway, request: Request, secret: str, response: Response) -> None:
    """Keep a new session for the admin key `secret` and set its cookie on `response`."""
    await store_session(gw, request, response, {"key": hash_key(secret)})


async def store_session(gw: Gateway, request: Request, response: Response, body: dict[str, Any]) -> None:
    """Keep a new session holding `body` (a key's hash, or a provider sign-in's claims) and set its cookie."""
    token = secrets.token_urlsafe(32)
    seconds = gw.config.dashboard.session_hours * 3600
    await gw.storage.put_state(STATE_PREFIX + hash_key(token), OWNER, json.dumps(body), time.time() + seconds)
    response.set_cookie(COOKIE, token, max_age=int(seconds), path=_cookie_path(request), httponly=True,
                        samesite="strict", secure=is_https(request))


async def close_session(gw: Gateway, request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE, "")
    if token:
        await gw.storage.put_state(STATE_PREFIX + hash_key(token), OWNER, "{}", 0.0)  # expired: never read again
    response.delete_cookie(COOKIE, path=_cookie_path(request), httponly=True, samesite="strict",
                           secure=is_https(request))


def is_https(request: Request) -> bool:
    """HTTPS here or at the reverse proxy in front (which terminates TLS and says so)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def cross_site(request: Request) -> bool:
    """A form posted from another site (the browser says so in `Sec-Fetch-Site`)."""
    return request.headers.get("sec-fetch-site", "same-origin") in ("cross-site", "same-site")


def _cookie_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") or "/ui"
