"""The gateway as an OAuth protected resource (RFC 9728): its metadata and its 401 challenge.

An MCP client that gets 401 reads `resource_metadata` from `WWW-Authenticate`, finds the provider
there, registers or uses its client, signs the user in (PKCE, with this resource as RFC 8707
`resource`), and calls again with the token.
"""

from __future__ import annotations

from urllib.parse import urlparse

from mcp.server.auth.routes import build_resource_metadata_url
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .sign_in import SignIn


def metadata_url(sign_in: SignIn) -> str:
    return str(build_resource_metadata_url(AnyHttpUrl(sign_in.settings.resource)))


def www_authenticate(sign_in: SignIn | None, refused: str | None = None) -> str:
    """The challenge of a 401: with sign-in, where its metadata is (and why a token was refused)."""
    if sign_in is None:
        return 'Bearer realm="mcp-gateway"'
    parts = [f'resource_metadata="{metadata_url(sign_in)}"']
    if refused is not None:
        reason = refused.replace('"', "'").replace("\\", "/")
        parts = ['error="invalid_token"', f'error_description="{reason}"', *parts]
    if sign_in.settings.scopes:
        parts.append(f'scope="{" ".join(sign_in.settings.scopes)}"')
    return "Bearer " + ", ".join(parts)


def metadata_routes(sign_in: SignIn) -> list[Route]:
    """`/.well-known/oauth-protected-resource` + the resource's path, and under it each group endpoint's path
    (`/mcp/<group>` is part of the same resource: one token serves every endpoint the caller may use)."""
    settings = sign_in.settings
    document = ProtectedResourceMetadata(
        resource=AnyHttpUrl(settings.resource),
        authorization_servers=[AnyHttpUrl(settings.issuer)],
        scopes_supported=settings.scopes or None,
        resource_name="mcp-gateway",
    ).model_dump(mode="json", exclude_none=True)
    document |= {"resource": settings.resource, "authorization_servers": [settings.issuer]}  # as written: no "/" added

    async def metadata(request: Request) -> Response:
        return JSONResponse(document, headers={"access-control-allow-origin": "*", "cache-control": "max-age=300"})

    path = urlparse(metadata_url(sign_in)).path
    paths = dict.fromkeys([path, path.rstrip("/") + "/{group}", "/.well-known/oauth-protected-resource"])
    return [Route(p, metadata, methods=["GET"]) for p in paths]
