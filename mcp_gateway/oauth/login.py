"""Logging the gateway in to an OAuth-protected upstream: a link now, the tokens at the callback.

`start_login` finds the upstream's authorization server (RFC 9728, then RFC 8414 / OIDC discovery, with
the MCP SDK's discovery helpers), registers the gateway there once (RFC 7591; or uses the configured
client), and returns the authorization URL (PKCE S256, RFC 8707 `resource`). What the callback needs
(the code verifier, whose login it is) is sealed into the store's short-lived state under the `state`
parameter, so the callback may land on any replica. `finish_login` exchanges the code and stores the
tokens. A login link is single-use and lasts `LOGIN_TTL_S`. Every request goes through `fetch.py`: metadata
documents are read up to `DOCUMENT_MAX_BYTES`, the registration's answer up to `ANSWER_MAX_BYTES`, each
within the deadline.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import urlencode

import httpx2
import structlog
from mcp.client.auth.oauth2 import PKCEParameters
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    create_client_registration_request,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    handle_registration_response,
    issuers_match,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthMetadata
from mcp.shared.auth_utils import resource_url_from_server_url
from pydantic import AnyUrl

from ..config import ServerConfig
from ..storage import Storage
from .errors import LoginError, TokenRequestError
from .fetch import DOCUMENT_MAX_BYTES, BoundedClient, OutboundError, describe, fetch
from .grants import Grants, Registration

log = structlog.get_logger("mcp_gateway.oauth")

LOGIN_TTL_S = 600.0
STATE_OWNER = "oauth-login"


async def start_login(grants: Grants, server: str, config: ServerConfig, owner: str,
                      redirect_uri: str) -> tuple[str, str]:
    """The authorization URL at which `owner` logs the gateway in to `server`, and its `state` (which names
    this login: the URL elicitation's id)."""
    registration = await grants.registration(server)
    if registration is None or not _still_valid(registration, config, redirect_uri):
        if registration is not None:  # logins made with the old client cannot be refreshed with the new one
            log.warning("oauth client registered again: the callback URL or the configured client changed (replicas "
                        "must share gateway.public_url); earlier logins will be asked to log in again",
                        server=server, callback=redirect_uri)
        registration = await register(grants.http, server, config, redirect_uri)
        await grants.save_registration(server, registration)
    client_id = registration.client.client_id or ""
    waiting = await _waiting_login(grants, server, owner, client_id)
    if waiting is not None:  # one link per caller and server at a time: asking again gives the same
        return waiting
    pkce = PKCEParameters.generate()
    state = secrets.token_urlsafe(32)
    pending = {"server": server, "owner": owner, "verifier": pkce.code_verifier, "redirect_uri": redirect_uri}
    sealed = grants.vault.seal(json.dumps(pending).encode(), f"login:{state}")
    expires = time.time() + LOGIN_TTL_S
    await grants.storage.put_state(_state_key(state), STATE_OWNER, base64.b64encode(sealed).decode(), expires)
    params = {"response_type": "code", "client_id": registration.client.client_id or "", "redirect_uri": redirect_uri,
              "state": state, "code_challenge": pkce.code_challenge, "code_challenge_method": "S256",
              "resource": registration.resource}
    if registration.scope:
        params["scope"] = registration.scope
        if "offline_access" in registration.scope.split():
            params["prompt"] = "consent"  # OpenID Connect asks it with offline_access
    link = f"{registration.metadata.authorization_endpoint}?{urlencode(params)}"
    waiting_key = _waiting_key(server, owner)
    sealed = grants.vault.seal(json.dumps([link, state, client_id]).encode(), waiting_key)
    await grants.storage.put_state(waiting_key, STATE_OWNER, base64.b64encode(sealed).decode(), expires - 60)
    return link, state


async def _waiting_login(grants: Grants, server: str, owner: str, client_id: str) -> tuple[str, str] | None:
    """The link (and state) of `owner`'s login to `server` that waits for its answer, with a minute left at least,
    made for the gateway's client `client_id` there (one made before the gateway registered again is not)."""
    key = _waiting_key(server, owner)
    body = await grants.storage.get_state(key, STATE_OWNER)
    try:
        link, state, made_for = json.loads(grants.vault.open(base64.b64decode(body), key)) if body else ("", "", "")
    except Exception:  # sealed with another secret key, or by an earlier version: a new link
        return None
    return (str(link), str(state)) if link and state and made_for == client_id else None


async def finish_login(grants: Grants, state: str, code: str, iss: str | None) -> tuple[str, str]:
    """Exchange the code of the login `state` named; returns (server, owner)."""
    storage: Storage = grants.storage
    body = await storage.take_state(_state_key(state), STATE_OWNER)  # single use: of two answers at once, one
    if body is None:
        raise LoginError("this login link is unknown, used already or older than 10 minutes: ask for a new one")
    try:
        pending = json.loads(grants.vault.open(base64.b64decode(body), f"login:{state}"))
    except Exception:
        raise LoginError("this login link cannot be read here (another secret key?): ask for a new one") from None
    server, owner = str(pending["server"]), str(pending["owner"])
    await storage.take_state(_waiting_key(server, owner), STATE_OWNER)  # the next login gets a new link
    registration = await grants.registration(server)
    if registration is None:
        raise LoginError(f"the gateway has no client registration for {server} any more: ask for a new link")
    expected = str(registration.metadata.issuer)
    if iss is not None and not issuers_match(iss, expected):
        raise LoginError("the answer came from another authorization server than the one asked (RFC 9207)")
    try:
        tokens = await grants.token_request(registration, {
            "grant_type": "authorization_code", "code": code, "redirect_uri": str(pending["redirect_uri"]),
            "code_verifier": str(pending["verifier"])})
    except TokenRequestError as exc:
        if not exc.refused:
            raise LoginError(f"the login to {server} could not be finished: {exc}; try again") from None
        raise LoginError(f"{server}'s authorization server refused the login: {exc}") from None
    await grants.save(server, owner, tokens)
    return server, owner


async def register(http: BoundedClient, server: str, config: ServerConfig, redirect_uri: str) -> Registration:
    """Discover the upstream's authorization server and register the gateway there (or take the configured
    client)."""
    assert config.url is not None
    resource = resource_url_from_server_url(config.url)
    auth_server: str | None = None
    named_scopes: list[str] = []
    for url in build_protected_resource_metadata_discovery_urls(None, config.url):
        found = await handle_protected_resource_response(await _get(http, url))
        if found is not None:
            auth_server = str(found.authorization_servers[0])
            resource = str(found.resource) if found.resource else resource
            named_scopes = list(found.scopes_supported or [])
            break
    metadata: OAuthMetadata | None = None
    for url in build_oauth_authorization_server_metadata_discovery_urls(auth_server, config.url):
        ok, found_metadata = await handle_auth_metadata_response(await _get(http, url))
        if found_metadata is not None:
            metadata = found_metadata
            break
        if not ok:
            break
    if metadata is None:
        raise LoginError(f"{server} names no OAuth authorization server the gateway can read "
                         f"(protected-resource and authorization-server metadata)")
    if auth_server is not None and not issuers_match(str(metadata.issuer), auth_server):
        raise LoginError(f"{server}'s authorization server metadata names another issuer ({metadata.issuer})")
    oauth = config.oauth
    wanted_scopes = list(oauth.scopes) if oauth and oauth.scopes else named_scopes
    if "offline_access" in (metadata.scopes_supported or []) and "offline_access" not in wanted_scopes:
        wanted_scopes.append("offline_access")
    scope = " ".join(wanted_scopes) or None
    if oauth is not None and oauth.client_id:
        client = OAuthClientInformationFull(
            client_id=oauth.client_id, client_secret=oauth.client_secret, redirect_uris=[AnyUrl(redirect_uri)],
            token_endpoint_auth_method="client_secret_basic" if oauth.client_secret else "none", scope=scope)
        return Registration(client, metadata, resource, scope)
    if metadata.registration_endpoint is None:
        raise LoginError(f"{server}'s authorization server offers no dynamic registration: register a client "
                         f"there and set [servers.{server}.oauth] client_id (and client_secret)")
    wanted = OAuthClientMetadata(redirect_uris=[AnyUrl(redirect_uri)], client_name="mcp-gateway",
                                 grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                                 token_endpoint_auth_method="client_secret_basic", scope=scope)
    request = create_client_registration_request(metadata, wanted, str(metadata.issuer))
    try:
        response = await http.send(request)  # bounded by the client: ANSWER_MAX_BYTES, the deadline
        client = await handle_registration_response(response)
    except OutboundError as exc:
        raise LoginError(f"{server}'s authorization server did not register the gateway: {exc}") from None
    except Exception as exc:  # OAuthRegistrationError, HTTP errors: their text may echo the request
        raise LoginError(f"{server}'s authorization server refused the gateway's registration: "
                         f"{type(exc).__name__}") from None
    return Registration(client, metadata, resource, scope)


async def _get(http: BoundedClient, url: str) -> httpx2.Response:
    try:
        return await fetch(http, "GET", url, max_bytes=DOCUMENT_MAX_BYTES)
    except OutboundError as exc:
        raise LoginError(f"{url} could not be read: {exc}") from None
    except httpx2.HTTPError as exc:
        raise LoginError(f"{url} did not answer: {describe(exc)}") from None


def _still_valid(registration: Registration, config: ServerConfig, redirect_uri: str) -> bool:
    """A stored registration serves while its redirect URI and the configured client (if any) are unchanged."""
    configured = config.oauth.client_id if config.oauth else None
    same_client = configured is None or registration.client.client_id == configured
    return same_client and any(str(u) == redirect_uri for u in registration.client.redirect_uris or [])


def _waiting_key(server: str, owner: str) -> str:
    return f"oauth-login-for:{server}:{owner}"


def _state_key(state: str) -> str:
    return "oauth-login:" + state
