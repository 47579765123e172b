"""The OpenID provider fixture works: discovery, logins by HTTP, the tokens' audience and claims, refresh,
introspection and revocation, key rotation, and the MCP SDK's own OAuth client signing in to a protected server.

Node 22 and the pinned `oidc-provider` are installed into `tests/interop/.npm/` on first use; without node or npm
the tests skip, or fail where `MCP_GATEWAY_REQUIRE_NODE` is set.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import http_fixture
from tests.identity.idp import (
    CONFIDENTIAL_CLIENT,
    PUBLIC_CLIENT,
    RESOURCE_SERVER_CLIENT,
    IdentityProvider,
    OAuthClient,
    Resource,
    SignInError,
    introspect,
    refresh,
    revoke,
    sign_in,
    token_for,
)
from tests.identity.sdk_client import UserOAuth, oauth_client

pytestmark = pytest.mark.anyio

API = "http://127.0.0.1:9/api"  # a JWT resource: nothing listens there, the tokens are only decoded
OPAQUE = "http://127.0.0.1:9/opaque"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider({API: Resource(), OPAQUE: Resource("opaque")}) as provider:
        yield provider


@contextlib.asynccontextmanager
async def protected_server(idp: IdentityProvider) -> AsyncIterator[str]:
    """`oauth_server.py` checking tokens at `idp`, which issues opaque tokens for it; yields its URL (its resource)."""
    client = RESOURCE_SERVER_CLIENT
    assert client.client_secret is not None
    async with http_fixture("oauth_server", "http", idp.issuer, client.client_id, client.client_secret) as url:
        idp.add_resource(url, Resource("opaque"))  # its port is known only now
        yield url


@pytest.fixture(scope="module")
async def upstream(idp: IdentityProvider) -> AsyncIterator[str]:
    async with protected_server(idp) as url:
        yield url


def verified(idp: IdentityProvider, token: str, audience: str) -> dict[str, Any]:
    """The JWT's claims, its signature checked against the provider's published keys."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(idp.jwks())[kid]
    return dict(jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=idp.issuer))


async def test_discovery_document(idp: IdentityProvider) -> None:
    async with httpx2.AsyncClient() as http:
        said = (await http.get(f"{idp.issuer}/.well-known/openid-configuration")).json()
    assert said["issuer"] == idp.issuer
    assert said["code_challenge_methods_supported"] == ["S256"]
    assert said["authorization_response_iss_parameter_supported"] is True
    for endpoint in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "introspection_endpoint",
                     "revocation_endpoint", "jwks_uri"):
        assert said[endpoint].startswith(f"{idp.issuer}/")
    assert {"openid", "offline_access", "mcp"} <= set(said["scopes_supported"])


async def test_login_yields_a_jwt_for_the_resource_with_email_and_groups(idp: IdentityProvider) -> None:
    tokens = await token_for(idp, "alice", API)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 60 and tokens["refresh_token"]
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"  # RFC 9068
    claims = verified(idp, tokens["access_token"], API)
    assert claims["aud"] == API and claims["sub"] == "alice" and claims["client_id"] == PUBLIC_CLIENT.client_id
    assert claims["email"] == "alice@example.com" and claims["groups"] == ["engineering", "admins"]
    assert claims["scope"] == "mcp" and claims["exp"] - claims["iat"] == 60
    with pytest.raises(jwt.InvalidAudienceError):
        verified(idp, tokens["access_token"], OPAQUE)


async def test_refresh(idp: IdentityProvider) -> None:
    tokens = await token_for(idp, "bob", API, client=CONFIDENTIAL_CLIENT)
    response = await refresh(idp, tokens["refresh_token"], client=CONFIDENTIAL_CLIENT, resource=API)
    assert response.status_code == 200, response.text
    renewed = response.json()
    assert renewed["access_token"] != tokens["access_token"]
    claims = verified(idp, renewed["access_token"], API)
    assert (claims["sub"], claims["email"], claims["groups"]) == ("bob", "bob@example.com", ["sales"])
    # another client cannot use it
    refused = await refresh(idp, renewed.get("refresh_token", tokens["refresh_token"]), client=PUBLIC_CLIENT)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


async def test_dynamic_registration(idp: IdentityProvider) -> None:
    public = idp.register_client()
    assert public.client_secret is None and public.auth_method == "none"
    confidential = idp.register_client(OAuthClient("", "asked", secret_method="client_secret_post"))
    assert confidential.client_secret not in (None, "asked") and confidential.auth_method == "client_secret_post"
    for client in (public, confidential):
        tokens = await token_for(idp, "bob", API, client=client)
        assert verified(idp, tokens["access_token"], API)["client_id"] == client.client_id
        assert (await refresh(idp, tokens["refresh_token"], client=client)).status_code == 200


async def test_revoked_token_introspects_inactive(idp: IdentityProvider) -> None:
    tokens = await token_for(idp, "alice", OPAQUE, client=CONFIDENTIAL_CLIENT)
    said = await introspect(idp, tokens["access_token"])
    assert said["active"] is True and said["aud"] == OPAQUE and said["sub"] == "alice"
    assert said["email"] == "alice@example.com" and said["groups"] == ["engineering", "admins"]
    assert said["client_id"] == CONFIDENTIAL_CLIENT.client_id and said["exp"] > time.time()
    await revoke(idp, tokens["access_token"], client=CONFIDENTIAL_CLIENT)
    assert await introspect(idp, tokens["access_token"]) == {"active": False}
    # revoking an access token revokes the rest of its grant too (oidc-provider's policy)
    assert await introspect(idp, tokens["refresh_token"]) == {"active": False}


async def test_refused_logins(idp: IdentityProvider) -> None:
    with pytest.raises(SignInError, match="mallory"):
        await token_for(idp, "mallory", API)  # not an account
    with pytest.raises(SignInError, match="invalid_target"):
        await token_for(idp, "alice", "http://127.0.0.1:9/elsewhere")  # not a resource
    # no PKCE: refused
    query = {"response_type": "code", "client_id": CONFIDENTIAL_CLIENT.client_id, "scope": "mcp",
             "redirect_uri": CONFIDENTIAL_CLIENT.redirect_uris[0], "state": "s", "resource": API}
    async with httpx2.AsyncClient() as browser:
        redirect = await sign_in(browser, f"{idp.metadata['authorization_endpoint']}?{urlencode(query)}", "alice")
    assert parse_qs(urlsplit(redirect).query)["error"] == ["invalid_request"]
    assert "PKCE" in parse_qs(urlsplit(redirect).query)["error_description"][0]


async def test_key_rotation(idp: IdentityProvider) -> None:
    before = await token_for(idp, "alice", API)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    assert idp.kids[0] == old_kid

    kids = idp.rotate_keys()
    assert kids[0] != old_kid and old_kid in kids
    assert [key["kid"] for key in idp.jwks()["keys"]] == kids
    verified(idp, before["access_token"], API)  # still published
    # the grant survived the rotation: its refresh token yields a token signed with the new key
    renewed = (await refresh(idp, before["refresh_token"], resource=API)).json()
    assert jwt.get_unverified_header(renewed["access_token"])["kid"] == kids[0]
    verified(idp, renewed["access_token"], API)

    kids = idp.rotate_keys(keep_old=False)
    assert [key["kid"] for key in idp.jwks()["keys"]] == kids and len(kids) == 1
    with pytest.raises(KeyError):
        verified(idp, before["access_token"], API)
    after = await token_for(idp, "bob", API)
    assert jwt.get_unverified_header(after["access_token"])["kid"] == kids[0]


async def whoami(url: str, auth: UserOAuth) -> dict[str, Any]:
    async with httpx2.AsyncClient(auth=auth) as http, Client(streamable_http_client(url, http_client=http)) as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_sdk_oauth_client_signs_in_to_a_protected_server(idp: IdentityProvider, upstream: str) -> None:
    auth = oauth_client(upstream, "alice", idp)  # registers itself (RFC 7591)
    said = await whoami(upstream, auth)
    assert said["sub"] == "alice" and said["email"] == "alice@example.com"
    assert len(auth.sign_ins) == 1
    asked = parse_qs(urlsplit(auth.authorizations[0]).query)
    assert asked["resource"] == [upstream] and asked["code_challenge_method"] == ["S256"]
    assert auth.storage.tokens is not None and auth.storage.tokens.refresh_token
    assert (await introspect(idp, auth.storage.tokens.access_token))["aud"] == upstream

    # a pre-registered confidential client, another user
    bob = oauth_client(upstream, "bob", idp, client_id=CONFIDENTIAL_CLIENT.client_id)
    said = await whoami(upstream, bob)
    assert (said["sub"], said["client_id"]) == ("bob", CONFIDENTIAL_CLIENT.client_id)


async def test_sdk_oauth_client_refreshes_an_expired_token() -> None:
    # The SDK counts the lifetime from the token response, the provider from `iat` in whole seconds: for up to a
    # second before the SDK refreshes, the server already refuses the token (and the SDK would sign in again).
    # The first session is done well within that second.
    with IdentityProvider(access_token_ttl=2) as idp:
        async with protected_server(idp) as url:
            auth = oauth_client(url, "alice", idp)
            assert (await whoami(url, auth))["sub"] == "alice"
            first = auth.storage.tokens
            assert first is not None and first.expires_in == 2
            await anyio.sleep(2.2)
            assert (await whoami(url, auth))["sub"] == "alice"
            assert auth.storage.tokens is not None and auth.storage.tokens.access_token != first.access_token
            assert len(auth.sign_ins) == 1  # refreshed, not signed in again
