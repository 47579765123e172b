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
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import CallToolResult

from mcp_gateway.config_files import load_config
from mcp_gateway.oauth.grants import SHARED, Grants, open_grants
from mcp_gateway.oauth.vault import new_secret_key
from mcp_gateway.storage import SQLiteStorage
from tests.helpers import free_port, http_fixture, key_client, wait_for_port
from tests.identity.idp import (
    ACCOUNTS,
    RESOURCE_SERVER_CLIENT,
    Account,
    IdentityProvider,
    OAuthClient,
    Resource,
    revoke,
    sign_in,
)
from tests.stores import postgres_schema

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    accounts = {**ACCOUNTS, "svc": Account("svc@example.com")}  # a service account for shared logins
    with IdentityProvider(accounts=accounts, access_token_ttl=5) as provider:
        yield provider


@pytest.fixture(scope="module")
async def upstream(idp: IdentityProvider) -> AsyncIterator[str]:
    client = RESOURCE_SERVER_CLIENT
    assert client.client_secret is not None
    async with http_fixture("oauth_server", "http", idp.issuer, client.client_id, client.client_secret) as url:
        idp.add_resource(url, Resource("opaque"))
        yield url


def write_config(tmp_path: Path, port: int, upstream: str, extra: str = "[gateway]\nanonymous = true\n") -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(f"""{extra}
[servers.secure]
url = "{upstream}"
mode = "direct"
[servers.secure.oauth]
identity = "{'per_user' if '# per_user' in extra else 'shared'}"
""")
    return config


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_gateway.cli", *args, "--config", str(config)]


@contextlib.contextmanager
def serving(config: Path, port: int, log_path: Path) -> Iterator[None]:
    """`mcp-gateway serve` on `port`, its stderr into `log_path`."""
    with log_path.open("w") as log:
        gateway = subprocess.Popen(cli(config, "serve", "--port", str(port)), stdout=subprocess.DEVNULL,
                                   stderr=log)
    try:
        yield
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)


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


async def whoami(url: str, key: str | None = None) -> dict[str, object]:
    result = await call_whoami(url, key)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    return dict(result.structured_content or json.loads(result.content[0].text))  # type: ignore[union-attr]


async def call_whoami(url: str, key: str | None = None) -> CallToolResult:
    async with key_client(url, key) as client:
        return await client.call_tool("secure_whoami", {})


async def until_ready(url: str, key: str | None = None, timeout_s: float = 30) -> None:
    """The upstream's tools are served (the gateway reconnected after the login)."""
    with anyio.fail_after(timeout_s):
        while True:
            async with key_client(url, key) as client:
                if any(t.name == "secure_whoami" for t in (await client.list_tools()).tools):
                    return
            await anyio.sleep(0.2)


async def test_a_shared_login_serves_every_caller_and_recovers(idp: IdentityProvider, upstream: str,
                                                               tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, upstream,
                          f'[gateway]\nanonymous = true\nstate_dir = "{tmp_path / "state"}"\nport = {port}\n')
    url = f"http://127.0.0.1:{port}/mcp"
    log_path = tmp_path / "stderr"
    with serving(config, port, log_path):
        await wait_for_port(port, 30)
        async with key_client(url) as client:  # before any login: the upstream says what to do
            tools = (await client.list_tools()).tools
            assert not any(t.name.startswith("secure_") for t in tools)
        async with httpx2.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/healthz", headers={})).json()
        assert health["status"] == "degraded"

        await login(config, "alice")
        await until_ready(url)
        said = await whoami(url)
        assert said["sub"] == "alice"

        # the provider's access tokens live 5 s: refreshed within the last quarter of their life
        seen = await held_tokens(config, tmp_path)
        await anyio.sleep(4)
        assert (await whoami(url))["sub"] == "alice"
        refreshed = await held_tokens(config, tmp_path)
        assert refreshed and refreshed != seen  # a new access token
        seen |= refreshed

        # the whole grant revoked at the provider: the upstream refuses the token, the refresh is refused too,
        # and the upstream says it needs a new login; a new login brings it back
        await revoke_at_provider(idp, config, tmp_path)
        refused = await call_whoami(url)
        assert refused.is_error and "auth login secure" in refused.content[0].text  # type: ignore[union-attr]
        await login(config, "bob")
        await until_ready(url)
        assert (await whoami(url))["sub"] == "bob"
        seen |= await held_tokens(config, tmp_path)

        listing = subprocess.run(cli(config, "auth", "list"), capture_output=True, text=True, check=True)
        assert listing.stdout.splitlines()[2].split()[:2] == ["secure", "shared"]
        forgot = subprocess.run(cli(config, "auth", "revoke", "secure"), capture_output=True, text=True)
        assert forgot.returncode == 0, forgot.stderr
        assert await held_tokens(config, tmp_path) == set()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("gateway.db*"))
    logged = log_path.read_text()
    assert "oauth login completed" in logged and "oauth tokens refreshed" in logged
    assert len(seen) >= 4
    for token in seen:
        assert token not in logged and token.encode() not in stored


def per_user_config(tmp_path: Path, port: int, upstream: str, storage: str | None = None) -> Path:
    """Keys alice and bob; replicas started on other ports share `public_url` (as behind a load balancer), and
    `storage` (a PostgreSQL URL) when given."""
    shared = f'[storage]\nurl = "{storage}"\n' if storage else ""
    return write_config(tmp_path, port, upstream, f"""{shared}[gateway]
port = {port}
public_url = "http://127.0.0.1:{port}"
state_dir = "{tmp_path / 'state'}"
[keys.alice]
key = "{ALICE}"
groups = ["all"]
[keys.bob]
key = "{BOB}"
groups = ["all"]
[groups.all]
tools = ["secure.*"]
# per_user
""")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_per_user_logins_act_as_each_caller(idp: IdentityProvider, upstream: str, tmp_path: Path, backend: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A service account's shared login lists the tools; each key's calls need that key's own login (its link
    in the error), then reach the upstream as that user; another replica on the same store serves them too
    (two processes on one SQLite file, or on PostgreSQL with the secret key from the environment)."""
    async with contextlib.AsyncExitStack() as stack:
        storage = await stack.enter_async_context(postgres_schema()) if backend == "postgres" else None
        if storage is not None:  # replicas on PostgreSQL hold the same key, from the environment
            monkeypatch.setenv("MCP_GATEWAY_SECRET_KEY", new_secret_key())
        await per_user_logins(idp, upstream, tmp_path, storage)


async def per_user_logins(idp: IdentityProvider, upstream: str, tmp_path: Path, storage: str | None) -> None:
    port, port2 = free_port(), free_port()
    config = per_user_config(tmp_path, port, upstream, storage)
    url, url2 = f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port2}/mcp"
    with serving(config, port, tmp_path / "stderr"), serving(config, port2, tmp_path / "stderr2"):
        await wait_for_port(port, 30)
        await wait_for_port(port2, 30)
        await login(config, "svc")  # the shared login: the tools are listed with it, never called with it
        await until_ready(url, ALICE)
        await until_ready(url2, ALICE)

        for key, user in ((ALICE, "alice"), (BOB, "bob")):
            asked = await call_whoami(url, key)
            text = asked.content[0].text  # type: ignore[union-attr]
            assert asked.is_error and "needs your own login" in text and "call secure.whoami again" in text
            link = re.search(r"open (\S+) within 10 minutes", text)
            assert link is not None
            async with httpx2.AsyncClient() as browser:
                page = await browser.get(await sign_in(browser, link.group(1), user))
            assert page.status_code == 200 and "your calls" in page.text
        assert (await whoami(url, ALICE))["sub"] == "alice"
        assert (await whoami(url, BOB))["sub"] == "bob"
        assert (await whoami(url2, BOB))["sub"] == "bob"  # a replica that did not see the login
        assert (await whoami(url2, ALICE))["sub"] == "alice"
        listing = subprocess.run(cli(config, "auth", "list"), capture_output=True, text=True, check=True).stdout
        assert {line.split()[1] for line in listing.splitlines()[2:]} == {"shared", "key:alice", "key:bob"}
        # alice's login forgotten: only alice is asked again
        subprocess.run(cli(config, "auth", "revoke", "secure", "--owner", "key:alice"), check=True,
                       capture_output=True)
        again = await call_whoami(url2, ALICE)
        assert again.is_error and "needs your own login" in again.content[0].text  # type: ignore[union-attr]
        assert (await whoami(url2, BOB))["sub"] == "bob"


async def test_clients_that_open_urls_are_sent_to_the_login(idp: IdentityProvider, upstream: str,
                                                             tmp_path: Path) -> None:
    """A 2026-07-28 client that can open URLs is asked in an input-required round (URL-mode elicitation) and its
    retry reaches the upstream as its user; a 2025-11-25 client gets the -32042 error carrying the URL."""
    port = free_port()
    config = per_user_config(tmp_path, port, upstream)
    url = f"http://127.0.0.1:{port}/mcp"
    opened: list[types.ElicitRequestParams] = []

    def opener(user: str) -> Any:
        async def open_url(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            opened.append(params)
            assert isinstance(params, types.ElicitRequestURLParams)
            async with httpx2.AsyncClient() as browser:
                page = await browser.get(await sign_in(browser, params.url, user))
            assert page.status_code == 200
            return types.ElicitResult(action="accept")
        return open_url

    with serving(config, port, tmp_path / "stderr"):
        await wait_for_port(port, 30)
        await login(config, "svc")
        await until_ready(url, ALICE)
        async with key_client(url, ALICE, elicitation_callback=opener("alice")) as client:  # 2026-07-28
            result = await client.call_tool("secure_whoami", {})
        assert not result.is_error and len(opened) == 1, result
        assert "needs your own login" in opened[0].message
        assert (await whoami(url, ALICE))["sub"] == "alice"

        async with key_client(url, BOB, mode="legacy", elicitation_callback=opener("bob")) as client:  # 2025-11-25
            with pytest.raises(MCPError) as raised:
                await client.call_tool("secure_whoami", {})
            assert raised.value.error.code == types.URL_ELICITATION_REQUIRED
            wanted = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
            assert len(wanted) == 1 and "call secure.whoami again" in wanted[0].message
            await opener("bob")(None, wanted[0])
            again = await client.call_tool("secure_whoami", {})
        assert not again.is_error and json.loads(again.content[0].text)["sub"] == "bob"  # type: ignore[union-attr]


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




async def test_a_callers_login_link_is_made_once_answered_once_and_kept_out_of_the_audit(
        idp: IdentityProvider, upstream: str, tmp_path: Path) -> None:
    """Asking again gives the same link (one pending login per caller and server, not a row per call); ten answers
    at once to it log in once; the audit rows and `mcp-gateway logs` keep the link without its `state`."""
    port = free_port()
    config = per_user_config(tmp_path, port, upstream)
    url = f"http://127.0.0.1:{port}/mcp"
    with serving(config, port, tmp_path / "stderr"):
        await wait_for_port(port, 30)
        await login(config, "svc")
        await until_ready(url, ALICE)
        links = set()
        for _ in range(5):
            text = (await call_whoami(url, ALICE)).content[0].text  # type: ignore[union-attr]
            found = re.search(r"open (\S+) within 10 minutes", text)
            assert found is not None
            links.add(found.group(1))
        assert len(links) == 1
        [link] = links
        state = parse_qs(urlsplit(link).query)["state"][0]
        async with httpx2.AsyncClient() as browser:
            back = await sign_in(browser, link, "alice")
            pages = []

            async def answer() -> None:
                pages.append(await browser.get(back))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(answer)
        assert sorted(p.status_code for p in pages) == [200] + [400] * 9
        assert (await whoami(url, ALICE))["sub"] == "alice"
        logs = subprocess.run(cli(config, "logs", "--json"), capture_output=True, text=True, check=True).stdout
        assert "needs your own login" in logs and "state=[redacted]" in logs and state not in logs
        db = sqlite3.connect(tmp_path / "state" / "gateway.db")
        assert not any(state in str(row) for row in db.execute("SELECT error FROM audit"))
        db.close()
