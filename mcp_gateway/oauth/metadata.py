"""An authorization server's metadata: OpenID Connect discovery, else RFC 8414."""

from __future__ import annotations

from typing import Any

import httpx2

from ..errors import describe_exception


class MetadataError(Exception):
    """The provider's metadata could not be read or does not describe the expected issuer."""


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be: OIDC discovery appends to the issuer's path, RFC 8414 inserts
    before it (both tried, OIDC first, as MCP clients do)."""
    base = issuer.rstrip("/")
    scheme, _, rest = base.partition("://")
    host, slash, path = rest.partition("/")
    urls = [f"{base}/.well-known/openid-configuration"]
    if slash:
        urls += [f"{scheme}://{host}/.well-known/oauth-authorization-server/{path}",
                 f"{scheme}://{host}/.well-known/openid-configuration/{path}"]
    else:
        urls.append(f"{base}/.well-known/oauth-authorization-server")
    return urls


async def provider_metadata(http: httpx2.AsyncClient, issuer: str) -> dict[str, Any]:
    """The metadata document whose `issuer` is `issuer` (a document naming another issuer is refused:
    RFC 8414 section 3.3, against mix-up)."""
    problems = []
    for url in metadata_urls(issuer):
        try:
            response = await http.get(url, headers={"accept": "application/json"})
        except httpx2.HTTPError as exc:
            problems.append(f"{url}: {describe_exception(exc)}")
            continue
        if response.status_code != 200:
            problems.append(f"{url}: HTTP {response.status_code}")
            continue
        try:
            document = response.json()
        except ValueError:
            problems.append(f"{url}: not JSON")
            continue
        if not isinstance(document, dict) or document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
            problems.append(f"{url}: names issuer {document.get('issuer') if isinstance(document, dict) else None!r}")
            continue
        return document
    raise MetadataError(f"no metadata for issuer {issuer}: " + "; ".join(problems))
