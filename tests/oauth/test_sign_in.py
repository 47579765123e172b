"""Callers sign in with a real OpenID provider (oidc-provider on loopback): the MCP SDK's own OAuth client
finds the provider through the gateway's 401 and protected-resource metadata, logs in (the browser step
driven over HTTP), and calls tools as the user the provider says it is. Tokens that are expired, for
another resource, from another issuer, forged or revoked are refused; a provider that does not answer
makes requests fail (503), never pass; API keys keep working beside sign-in."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway import Gateway
from mcp_gateway.oauth import sign_in as sign_in_module
from mcp_gateway.storage import SQLiteStorage
from tests.helpers import FIXTURES, free_port, make_config, serve_gateway, stdio, text_of, wait_for_port
from tests.identity.idp import (
    CONFIDENTIAL_CLIENT,
    RESOURCE_SERVER_CLIENT,
    IdentityProvider,
    Resource,
    revoke,
    token_for,
)
from tests.identity.sdk_client import oauth_client

pytestmark = pytest.mark.anyio

KEY = "static-key-0123456789"
OTHER = "http://127.0.0.1:9/elsewhere/mcp"  # another resource the provider issues tokens for


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def resource(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def idp(resource: str) -> Iterator[IdentityProvider]:
    with IdentityProvider({resource: Resource(), OTHER: Resource()}, access_token_ttl=3) as provider:
        yield provider


def config(idp: IdentityProvider, resource: str, **sign_in: Any) -> Any:
    return make_config(
        {"math": stdio("math_server")},
        gateway={"default_mode": "direct"},
        groups={"math": {"tools": ["math.*"]}, "adding": {"tools": ["math.add"]}},
        teams={"eng": {"groups": ["adding"]}},
        keys={"ci": {"key": KEY, "groups": ["math"]}},
        sign_in={"issuer": idp.issuer, "resource": resource, "leeway_s": 0,
                 "groups": {"engineering": {"team": "eng"}, "admins": {"groups": ["math"], "admin": True}},
                 **sign_in},
    )


@contextlib.asynccontextmanager
async def gateway(idp: IdentityProvider, resource: str, port: int, **sign_in: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(config(idp, resource, **sign_in))
    async with gw, serve_gateway(gw, port):
        yield gw


@contextlib.asynccontextmanager
async def bearer_client(url: str, token: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def post(resource: str, token: str | None) -> httpx2.Response:
    """A bare `initialize` POST, to read the status and challenge of a refusal (200 when let in)."""
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    async with httpx2.AsyncClient() as http:
        return await http.post(resource, headers=headers,
                               json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})


async def test_the_sdk_client_signs_in_and_calls_as_the_user(idp: IdentityProvider, resource: str, port: int) -> None:
    async with gateway(idp, resource, port) as gw:
        auth = oauth_client(resource, "alice", idp)
        async with httpx2.AsyncClient(auth=auth) as http, Client(streamable_http_client(resource, http_client=http)) \
                as client:
            assert {t.name for t in (await client.list_tools()).tools} >= {"math_add", "math_echo"}
            assert text_of(await client.call_tool("math_add", {"a": 2, "b": 3})) == "5"
        assert len(auth.sign_ins) == 1  # one login, through the provider's own pages
        tokens = auth.storage.tokens
        assert tokens is not None and tokens.access_token.count(".") == 2  # a JWT for this gateway
        rows = await gw.storage.query_audit(tool="add")
        assert [(r.key, r.team, r.outcome) for r in rows] == [("alice@example.com", "eng", "ok")]

        bob = oauth_client(resource, "bob", idp)  # in no group the gateway maps: signed in, sees nothing
        async with httpx2.AsyncClient(auth=bob) as http, Client(streamable_http_client(resource, http_client=http)) \
                as client:
            assert (await client.list_tools()).tools == []


async def test_the_401_leads_to_the_provider(idp: IdentityProvider, resource: str, port: int) -> None:
    async with gateway(idp, resource, port, scopes=["mcp"]):
        refused = await post(resource, None)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        meta_url = f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
        assert f'resource_metadata="{meta_url}"' in challenge and 'scope="mcp"' in challenge
        async with httpx2.AsyncClient() as http:
            for url in (meta_url, meta_url + "/somegroup"):
                document = (await http.get(url)).json()
                assert document["resource"] == resource and document["authorization_servers"] == [idp.issuer]
                assert document["scopes_supported"] == ["mcp"]
            assert (await http.post(f"http://127.0.0.1:{port}/register")).status_code in (404, 405)


async def test_tokens_that_are_not_for_this_gateway_are_refused(idp: IdentityProvider, resource: str,
                                                                port: int) -> None:
    async with gateway(idp, resource, port):  # tokens live 3 s: made once the gateway is up
        good = (await token_for(idp, "alice", resource))["access_token"]
        assert (await post(resource, good)).status_code == 200
        elsewhere = (await token_for(idp, "alice", OTHER))["access_token"]
        header, payload, signature = good.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["groups"] = ["admins"]
        forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        forged = ".".join([header, forged_payload, signature])
        with IdentityProvider({resource: Resource()}) as impostor:  # same resource, another issuer and keys
            foreign = (await token_for(impostor, "alice", resource))["access_token"]
        for token, reason in ((elsewhere, "issued for another resource"), (forged, "signature does not verify"),
                              (foreign, "signed with a key the provider does not publish"),
                              ("not.a.jwt", "not a readable JWT"), ("mgw_unknown", None)):
            refused = await post(resource, token)
            assert refused.status_code == 401, token
            if reason is not None:
                assert 'error="invalid_token"' in refused.headers["www-authenticate"]
                assert reason in refused.json()["error"]["message"]
                assert reason in refused.headers["www-authenticate"]
        await anyio.sleep(3.2)  # the token lived 3 s (no leeway in this config), if it had not already
        expired = await post(resource, good)
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


async def test_no_token_reaches_the_log_or_the_audit_rows(idp: IdentityProvider, resource: str, port: int,
                                                         tmp_path: Path) -> None:
    """`mcp-gateway serve` at info level: a signed-in user's calls and refused tokens are logged and audited,
    and neither holds a token or a part of one."""
    config = tmp_path / "gw.toml"
    config.write_text(f"""
[gateway]
port = {port}
state_dir = "{tmp_path / 'state'}"
audit_arguments = true
[servers.math]
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(FIXTURES / 'math_server.py'))}]
mode = "direct"
[groups.math]
tools = ["math.*"]
[sign_in]
issuer = "{idp.issuer}"
resource = "{resource}"
[sign_in.groups.engineering]
groups = ["math"]
""")
    good = (await token_for(idp, "alice", resource))["access_token"]
    elsewhere = (await token_for(idp, "alice", OTHER))["access_token"]
    log = (tmp_path / "stderr").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        await wait_for_port(port, 30)
        async with bearer_client(resource, good) as client:
            assert text_of(await client.call_tool("math_echo", {"text": "hello"})) == "hello"
        assert (await post(resource, elsewhere)).status_code == 401
        assert (await post(resource, good[:-4] + "AAAA")).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
    logged = (tmp_path / "stderr").read_text()
    assert "sign-in keys fetched" in logged and logged.count("sign-in token refused") == 2
    storage = SQLiteStorage(tmp_path / "state" / "gateway.db")
    try:
        rows = await storage.query_audit()
    finally:
        await storage.close()
    assert any(r.key == "alice@example.com" and r.tool == "echo" for r in rows)
    audited = json.dumps([dataclasses.asdict(r) for r in rows])
    for token in (good, elsewhere):
        for part in token.split(".")[1:]:  # the header part names only the algorithm and key id
            assert part not in logged and part not in audited


async def test_api_keys_work_beside_sign_in(idp: IdentityProvider, resource: str, port: int) -> None:
    async with gateway(idp, resource, port), bearer_client(resource, KEY) as client:
        assert text_of(await client.call_tool("math_echo", {"text": "hi"})) == "hi"


async def test_the_sdk_client_refreshes_an_expired_token(idp: IdentityProvider, resource: str, port: int) -> None:
    async with gateway(idp, resource, port):
        auth = oauth_client(resource, "alice", idp)
        async with httpx2.AsyncClient(auth=auth) as http, Client(streamable_http_client(resource, http_client=http)) \
                as client:
            await client.list_tools()
            first = auth.storage.tokens
            await anyio.sleep(3.5)
            assert text_of(await client.call_tool("math_add", {"a": 1, "b": 1})) == "2"
            assert auth.storage.tokens is not None and first is not None
            assert auth.storage.tokens.access_token != first.access_token


async def test_rotated_keys_are_fetched(idp: IdentityProvider, resource: str, port: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sign_in_module, "REFETCH_S", 0.0)
    async with gateway(idp, resource, port):
        before = (await token_for(idp, "alice", resource))["access_token"]
        assert (await post(resource, before)).status_code == 200
        idp.rotate_keys(keep_old=False)
        after = (await token_for(idp, "alice", resource))["access_token"]
        assert (await post(resource, after)).status_code == 200  # a key id not seen before: fetched again


async def test_introspection_sees_a_revoked_token(idp: IdentityProvider, resource: str, port: int) -> None:
    opaque = f"http://127.0.0.1:{port}/mcp/"  # the same gateway, as a resource with opaque tokens
    idp.add_resource(opaque, Resource("opaque"))
    assert RESOURCE_SERVER_CLIENT.client_secret is not None
    async with gateway(idp, resource, port, tokens="introspection", audience=opaque, cache_s=0,
                       client_id=RESOURCE_SERVER_CLIENT.client_id, client_secret=RESOURCE_SERVER_CLIENT.client_secret):
        tokens = await token_for(idp, "alice", opaque, client=CONFIDENTIAL_CLIENT)
        assert tokens["access_token"].count(".") == 0
        async with bearer_client(resource, tokens["access_token"]) as client:
            assert text_of(await client.call_tool("math_add", {"a": 1, "b": 2})) == "3"
        await revoke(idp, tokens["access_token"], client=CONFIDENTIAL_CLIENT)
        refused = await post(resource, tokens["access_token"])
        assert refused.status_code == 401 and "not active" in refused.json()["error"]["message"]


async def test_a_provider_that_does_not_answer_refuses(resource: str, port: int) -> None:
    with IdentityProvider({resource: Resource()}) as idp:
        token = (await token_for(idp, "alice", resource))["access_token"]
        cfg_idp_issuer = idp.issuer
    # the provider is gone before the gateway ever fetched its keys: nothing can be verified
    gw = Gateway(make_config({"math": stdio("math_server")}, groups={"math": {"tools": ["math.*"]}},
                             sign_in={"issuer": cfg_idp_issuer, "resource": resource}))
    async with gw, serve_gateway(gw, port):
        refused = await post(resource, token)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "identity provider" in refused.json()["error"]["message"]


async def test_a_reload_applies_who_signed_in_users_are_at_once(idp: IdentityProvider, resource: str,
                                                                port: int) -> None:
    """Taking a provider group's tools or admin role away in the config takes them from its users at the reload;
    taking `[sign_in]` out refuses their tokens; the provider's connection itself needs a restart."""

    async def alice() -> str:  # engineering and admins; a token lives 3 s here
        return str((await token_for(idp, "alice", resource))["access_token"])

    async def tools_and_metrics() -> tuple[set[str], int]:
        token = await alice()
        async with bearer_client(resource, token) as client, httpx2.AsyncClient() as http:
            tools = {t.name for t in (await client.list_tools()).tools}
            metrics = await http.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
        return tools, metrics.status_code

    async with gateway(idp, resource, port) as gw:
        tools, metrics = await tools_and_metrics()
        assert tools >= {"math_add", "math_echo"} and metrics == 200
        settings = gw.config.sign_in
        assert settings is not None

        fewer = settings.model_copy(update={"groups": {"engineering": settings.groups["engineering"]}})
        assert gw.apply_governance(gw.config.model_copy(update={"sign_in": fewer})) == []
        assert await tools_and_metrics() == ({"math_add"}, 403)  # the team's group only; no longer an admin

        moved = fewer.model_copy(update={"issuer": "http://127.0.0.1:9/other", "name_claim": "sub"})
        assert gw.apply_governance(gw.config.model_copy(update={"sign_in": moved})) == ["sign_in.issuer"]
        async with bearer_client(resource, await alice()) as client:  # checked with the provider it started with
            assert text_of(await client.call_tool("math_add", {"a": 1, "b": 2})) == "3"
        assert next(r.key for r in await gw.storage.query_audit(tool="add")) != "alice@example.com"  # named by sub

        assert gw.apply_governance(gw.config.model_copy(update={"sign_in": None})) == []
        assert (await post(resource, await alice())).status_code == 401
        assert (await post(resource, KEY)).status_code == 200  # keys are not affected


def test_every_config_table_is_applied_by_a_reload_or_said_to_need_a_restart() -> None:
    base = make_config({"math": stdio("math_server")}, sign_in={"issuer": "http://127.0.0.1:9", "resource": OTHER})
    changed = make_config({"math": stdio("math_server"), "other": stdio("math_server")},
                          gateway={"name": "elsewhere", "state_dir": base.gateway.state_dir},
                          storage={"pool_size": 3}, limits={"timeout_s": 1},
                          dashboard={"enabled": True}, groups={"g": {"tools": ["math.*"]}}, teams={"t": {}},
                          keys={"k": {"key": KEY}}, tools={"math.add": {"approval": "always"}},
                          sign_in={"issuer": "http://127.0.0.1:8", "resource": OTHER, "name_claim": "sub"})
    gw = Gateway(base)
    assert sorted(gw.apply_governance(changed)) == ["dashboard", "gateway", "limits", "servers", "sign_in.issuer",
                                                    "storage"]
    assert gw.config.sign_in is not None and gw.config.sign_in.name_claim == "sub"
    assert gw.config.sign_in.issuer == "http://127.0.0.1:9" and gw.config.groups == changed.groups
