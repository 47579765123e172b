"""The gateway as an OAuth client of a protected upstream (a shared login), with real parts: oidc-provider on
loopback, the SDK-built `oauth_server.py` checking tokens by introspection, `mcp-gateway serve` and
`mcp-gateway auth login` as processes, the browser step driven over HTTP.

An admin runs `auth login`, opens the link, logs in; the callback lands on the running gateway, which stores
the tokens sealed and connects; every caller's calls reach the upstream as that login. Tokens are refreshed
before they expire; a refused refresh (the grant revoked at the provider) makes the upstream say it needs a
new login, and a new login brings it back. No token appears in logs, audit rows or the store in clear.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client

from mcp_gateway.config_files import load_config
from mcp_gateway.oauth.grants import SHARED, Grants, open_grants
from mcp_gateway.storage import SQLiteStorage
from tests.helpers import free_port, http_fixture, wait_for_port
from tests.identity.idp import RESOURCE_SERVER_CLIENT, IdentityProvider, OAuthClient, Resource, revoke, sign_in

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider(access_token_ttl=5) as provider:
        yield provider


@pytest.fixture(scope="module")
async def upstream(idp: IdentityProvider) -> AsyncIterator[str]:
    client = RESOURCE_SERVER_CLIENT
    assert client.client_secret is not None
    async with http_fixture("oauth_server", "http", idp.issuer, client.client_id, client.client_secret) as url:
        idp.add_resource(url, Resource("opaque"))
        yield url


def write_config(tmp_path: Path, port: int, upstream: str) -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(f"""
[gateway]
port = {port}
anonymous = true
state_dir = "{tmp_path / 'state'}"
audit_arguments = true
[servers.secure]
url = "{upstream}"
mode = "direct"
[servers.secure.oauth]
""")
    return config


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_gateway.cli", *args, "--config", str(config)]


async def login(config: Path, user: str) -> None:
    """`mcp-gateway auth login secure`, its link opened and signed in to, the callback sent to the gateway."""
    proc = await anyio.open_process(cli(config, "auth", "login", "secure"))
    assert proc.stdout is not None and proc.stderr is not None
    async with proc:
        link = (await proc.stdout.receive()).decode().strip().splitlines()[0]
        async with httpx2.AsyncClient() as browser:
            back = await sign_in(browser, link, user)
            page = await browser.get(back)
        assert page.status_code == 200, page.text
        assert "Logged in to secure" in page.text and page.headers["referrer-policy"] == "no-referrer"
        with anyio.fail_after(20):
            await proc.wait()
        said = b""
        async for chunk in proc.stderr:
            said += chunk
    assert proc.returncode == 0, said
    assert b"logged in: secure serves every caller" in said


async def whoami(url: str) -> dict[str, object]:
    async with Client(url) as client:
        result = await client.call_tool("secure_whoami", {})
        assert not result.is_error, result
        return dict(result.structured_content or json.loads(result.content[0].text))  # type: ignore[union-attr]


async def until_ready(url: str, user: str, timeout_s: float = 30) -> None:
    """The upstream's tools are served (the gateway reconnected after the login)."""
    with anyio.fail_after(timeout_s):
        while True:
            async with Client(url) as client:
                if any(t.name == "secure_whoami" for t in (await client.list_tools()).tools):
                    return
            await anyio.sleep(0.2)


async def test_a_shared_login_serves_every_caller_and_recovers(idp: IdentityProvider, upstream: str,
                                                               tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, upstream)
    url = f"http://127.0.0.1:{port}/mcp"
    log_path = tmp_path / "stderr"
    with log_path.open("w") as log:
        gateway = subprocess.Popen(cli(config, "serve"), stdout=subprocess.DEVNULL, stderr=log)
    try:
        await wait_for_port(port, 30)
        async with Client(url) as client:  # before any login: the upstream says what to do
            tools = (await client.list_tools()).tools
            assert not any(t.name.startswith("secure_") for t in tools)
        async with httpx2.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/healthz", headers={})).json()
        assert health["status"] == "degraded"

        await login(config, "alice")
        await until_ready(url, "alice")
        said = await whoami(url)
        assert said["sub"] == "alice"

        # the provider's access tokens live 5 s and are refreshed a minute before expiry: every call refreshes
        assert (await whoami(url))["sub"] == "alice"
        seen = await held_tokens(config, tmp_path)

        # the whole grant revoked at the provider: the upstream refuses the token, the refresh is refused too,
        # and the upstream says it needs a new login; a new login brings it back
        await revoke_at_provider(idp, config, tmp_path)
        async with Client(url) as client:
            refused = await client.call_tool("secure_whoami", {})
        assert refused.is_error and "auth login secure" in refused.content[0].text  # type: ignore[union-attr]
        await login(config, "bob")
        await until_ready(url, "bob")
        assert (await whoami(url))["sub"] == "bob"
        seen |= await held_tokens(config, tmp_path)

        listing = subprocess.run(cli(config, "auth", "list"), capture_output=True, text=True, check=True)
        assert listing.stdout.splitlines()[2].split()[:2] == ["secure", "shared"]
        forgot = subprocess.run(cli(config, "auth", "revoke", "secure"), capture_output=True, text=True)
        assert forgot.returncode == 0, forgot.stderr
        assert await held_tokens(config, tmp_path) == set()
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("gateway.db*"))
    logged = log_path.read_text()
    assert "oauth login completed" in logged and "oauth tokens refreshed" in logged
    assert len(seen) >= 4
    for token in seen:
        assert token not in logged and token.encode() not in stored


async def held_tokens(config: Path, tmp_path: Path) -> set[str]:
    """The access and refresh tokens of the shared login, read as the gateway reads them (sealed in the store)."""
    async with grants_of(config, tmp_path) as grants:
        grant = await grants.grant("secure", SHARED)
    return set() if grant is None else {t for t in (grant.tokens.access_token, grant.tokens.refresh_token) if t}


async def revoke_at_provider(idp: IdentityProvider, config: Path, tmp_path: Path) -> None:
    async with grants_of(config, tmp_path) as grants:
        grant = await grants.grant("secure", SHARED)
        registration = await grants.registration("secure")
    assert grant is not None and grant.tokens.refresh_token and registration is not None
    client = registration.client
    assert client.client_id is not None and client.client_secret is not None
    await revoke(idp, grant.tokens.refresh_token, client=OAuthClient(client.client_id, client.client_secret))


@contextlib.asynccontextmanager
async def grants_of(config: Path, tmp_path: Path) -> AsyncIterator[Grants]:
    storage = SQLiteStorage(tmp_path / "state" / "gateway.db")
    grants = open_grants(load_config(config), storage, {})
    assert grants is not None
    try:
        yield grants
    finally:
        await grants.http.aclose()
        await storage.close()


