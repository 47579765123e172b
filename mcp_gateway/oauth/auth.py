"""The `Authorization` header of the gateway's requests to an OAuth-protected upstream (an httpx auth)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx2

from .errors import LoginRequired
from .grants import Grants


class UpstreamAuth(httpx2.Auth):
    """Sends the access token of `owner`'s grant for `server`; refreshes it before it expires, and once
    more when the upstream answers 401 (a revoked or rotated token). Raises `LoginRequired` when no login
    serves (none, or its refresh was refused)."""

    def __init__(self, grants: Grants, server: str, owner: str) -> None:
        self.grants = grants
        self.server = server
        self.owner = owner
        self.refused: LoginRequired | None = None
        """Why the last request went unsent: the SDK reports only a closed connection for it."""

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            grant = await self.grants.fresh(self.server, self.owner)
            request.headers["Authorization"] = f"Bearer {grant.tokens.access_token}"
            response = yield request
            if response.status_code == 401:
                grant = await self.grants.fresh(self.server, self.owner, rejected=grant.tokens.access_token)
                request.headers["Authorization"] = f"Bearer {grant.tokens.access_token}"
                yield request
        except LoginRequired as exc:
            self.refused = exc
            raise

