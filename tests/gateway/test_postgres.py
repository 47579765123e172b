"""Gateways on PostgreSQL: replicas share keys, limits and the audit log, and a store that goes away
(at start, or mid-traffic) refuses callers with a clear error until it comes back by itself."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import httpx
import pytest

from mcp_gateway import Gateway, GatewayConfig
from tests.helpers import eventually, key_client, make_config, serve_gateway, stdio, text_of
from tests.stores import Cuttable, postgres_schema

pytestmark = pytest.mark.anyio
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ACCEPT = {"Accept": "application/json, text/event-stream"}
VERSION = "2025-11-25"


def post(body: dict[str, Any], key: str, session: str | None = None) -> dict[str, Any]:
    """httpx arguments for a 2025-11-25 POST with `key`, in `session` if given."""
    return {"json": body, "headers": {**ACCEPT, "Authorization": f"Bearer {key}", "MCP-Protocol-Version": VERSION,
                                      **({"Mcp-Session-Id": session} if session else {})}}


def config(url: str, replica: str, **sections: Any) -> GatewayConfig:
    return make_config({"math": stdio("math_server", mode="direct")}, groups={"all": {"tools": ["*"]}},
                       storage={"url": url, "replica": replica, "connect_timeout_s": 2}, **sections)


async def test_two_replicas_share_keys_limits_and_the_audit_log() -> None:
    async with postgres_schema() as url:
        teams = {"t": {"groups": ["all"], "calls_per_minute": 5}}
        a, b = Gateway(config(url, "a", teams=teams)), Gateway(config(url, "b", teams=teams))
        async with serve_gateway(a) as url_a, serve_gateway(b) as url_b:
            secret = await a.keys.create("ann", "t", [])  # as `mcp-gateway keys create` would, on one replica
            async with key_client(url_a, secret) as on_a, key_client(url_b, secret) as on_b:
                results = [await (on_a if i % 2 else on_b).call_tool("math_add", {"a": i, "b": 1}) for i in range(6)]
            assert [r.is_error for r in results] == [False] * 5 + [True], "5 a minute across both replicas"
            assert "team t allows 5 calls per minute (teams.t.calls_per_minute)" in text_of(results[5])
            assert await b.storage.revoke_key("ann")
            async with httpx.AsyncClient() as http:
                answer = await http.post(url_a, json=PING, headers={**ACCEPT, "Authorization": f"Bearer {secret}"})
            assert answer.status_code == 401, "revoked on one replica, refused on the other at once"
        rows = [r for r in await a.storage.query_audit() if r.kind == "tool"]
        assert {r.replica for r in rows} == {"a", "b"}
        assert [r.outcome for r in rows].count("ok") == 5 and rows[-1].outcome == "QuotaExceeded"


async def test_a_store_down_at_start_refuses_everyone_until_it_answers() -> None:
    proxy = Cuttable()
    async with postgres_schema() as url, anyio.create_task_group() as tg:
        gw = Gateway(config(proxy.through(url), "r1"))
        async with serve_gateway(gw) as gw_url, httpx.AsyncClient() as http:
            refused = await http.post(gw_url, json=PING, headers=ACCEPT)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "its store is unavailable" in refused.json()["error"]["message"]
            assert "postgres@" not in refused.text
            health = gw_url.removesuffix("/mcp") + "/healthz"
            assert (await http.get(health)).json()["status"] == "store unavailable"
            await proxy.restore(tg)

            async def serves() -> bool:
                return (await http.post(gw_url, json=PING, headers=ACCEPT)).status_code not in (401, 503)

            await eventually(serves, 10)

            async def healthy() -> bool:  # once it listens to the other replicas again too
                return (await http.get(health)).status_code == 200

            await eventually(healthy, 10)
        tg.cancel_scope.cancel()


async def test_a_store_lost_mid_traffic_refuses_calls_then_resumes_by_itself() -> None:
    proxy = Cuttable()
    async with postgres_schema() as url, anyio.create_task_group() as tg:
        await proxy.restore(tg)
        gw = Gateway(config(proxy.through(url), "r1"))
        async with serve_gateway(gw) as gw_url:
            secret = await gw.keys.create("ann", None, ["all"])
            async with key_client(gw_url, secret) as client:
                assert not (await client.call_tool("math_add", {"a": 1, "b": 1})).is_error
                await proxy.cut()
                with pytest.raises(Exception):  # noqa: B017 - the 503 at the door ends the client's request
                    await client.call_tool("math_echo", {"text": "must not run unaudited"})
            await proxy.restore(tg)

            async def serves() -> bool:
                try:
                    async with key_client(gw_url, secret) as again:
                        return not (await again.call_tool("math_add", {"a": 2, "b": 2})).is_error
                except Exception:
                    return False

            await eventually(serves, 15, every_s=0.5)
        rows = [r.tool for r in await gw.storage.query_audit() if r.kind == "tool"]
        assert "echo" not in rows and rows[0] == "add"
        tg.cancel_scope.cancel()


async def test_an_emptied_keys_table_does_not_open_a_running_gateway() -> None:
    async with postgres_schema() as url:
        gw = Gateway(config(url, "r1"))
        async with serve_gateway(gw) as gw_url, httpx.AsyncClient() as http:
            secret = await gw.keys.create("ann", None, ["all"])
            assert (await http.post(gw_url, json=PING, headers={**ACCEPT, "X-API-Key": secret})).status_code != 401
            conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": url.split("=")[-1]})
            await conn.execute("TRUNCATE keys")
            await conn.close()
            for headers in ({}, {"X-API-Key": secret}):
                assert (await http.post(gw_url, json=PING, headers={**ACCEPT, **headers})).status_code == 401


async def test_a_2025_11_25_session_opened_on_one_replica_continues_on_another_for_its_key_only() -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {"elicitation": {}}, "clientInfo": {"name": "t", "version": "1"}}}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with postgres_schema() as url:
        a, b = Gateway(config(url, "a")), Gateway(config(url, "b"))
        async with serve_gateway(a) as url_a, serve_gateway(b) as url_b, httpx.AsyncClient() as http:
            ann, bob = await a.keys.create("ann", None, ["all"]), await a.keys.create("bob", None, ["all"])
            opened = await http.post(url_a, **post(init, ann))
            session = opened.headers["mcp-session-id"]
            await http.post(url_a, **post({"jsonrpc": "2.0", "method": "notifications/initialized"}, ann, session))
            on_b = await http.post(url_b, **post(listing, ann, session))
            assert on_b.status_code == 200 and "math_add" in on_b.text
            assert (await http.post(url_b, **post(listing, bob, session))).status_code == 404, "only its own key"
            assert (await http.delete(url_b, **{k: v for k, v in post({}, ann, session).items() if k != "json"})
                    ).status_code == 200
            c = Gateway(config(url, "c"))
            async with serve_gateway(c) as url_c:
                assert (await http.post(url_c, **post(listing, ann, session))).status_code == 404, "ended"


async def test_only_a_sessions_own_key_can_answer_its_server_requests_across_replicas() -> None:
    """An answer (a JSON-RPC response, such as an approval) POSTed with another key's session id is not passed on."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {"elicitation": {}}, "clientInfo": {"name": "t", "version": "1"}}}
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"action": "accept", "content": {}}}
    async with postgres_schema() as url:
        a, b = Gateway(config(url, "a")), Gateway(config(url, "b"))
        published: list[str] = []
        real_publish = b.storage.publish

        async def spy(message: str) -> None:
            published.append(message)
            await real_publish(message)

        b.storage.publish = spy  # type: ignore[method-assign]
        async with serve_gateway(a) as url_a, serve_gateway(b) as url_b, httpx.AsyncClient() as http:
            ann, bob = await a.keys.create("ann", None, ["all"]), await a.keys.create("bob", None, ["all"])
            session = (await http.post(url_a, **post(init, ann))).headers["mcp-session-id"]
            assert (await http.post(url_b, **post(answer, bob, session))).status_code == 404
            assert published == []
            assert (await http.post(url_b, **post(answer, ann, session))).status_code == 202
            assert len(published) == 1 and session in published[0]
