"""What a key (or no key) can learn or reach besides its tools: health, metrics, sessions, a revoked key."""

from __future__ import annotations

import anyio
import httpx
import pytest

from mcp_gateway import Gateway, acting_as, call
from tests.helpers import make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

ADMIN, ANN, BOB = "admin-key-0123456789", "ann-key-0123456789ab", "bob-key-0123456789ab"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def keyed() -> Gateway:
    return Gateway(make_config(
        {"math": stdio("math_server"), "secretive": stdio("text_server")},
        groups={"math": {"tools": ["math.*"]}},
        keys={"ops": {"key": ADMIN, "admin": True}, "ann": {"key": ANN, "groups": ["math"]},
              "bob": {"key": BOB, "groups": ["math"]}},
    ))


async def test_health_and_metrics_show_servers_only_to_an_admin_key() -> None:
    gw = keyed()
    async with serve_gateway(gw) as url, httpx.AsyncClient() as http:
        base = url.removesuffix("/mcp")
        anonymous = (await http.get(f"{base}/healthz")).json()
        as_ann = (await http.get(f"{base}/healthz", headers={"Authorization": f"Bearer {ANN}"})).json()
        as_admin = (await http.get(f"{base}/healthz", headers={"Authorization": f"Bearer {ADMIN}"})).json()
        rebound = await http.get(f"{base}/healthz", headers={"Host": "evil.example"})
        metrics = {who: (await http.get(f"{base}/metrics", headers=headers)).status_code
                   for who, headers in (("none", {}), ("ann", {"X-API-Key": ANN}), ("ops", {"X-API-Key": ADMIN}))}
    assert anonymous == as_ann == {"status": "ok", "upstreams_ready": 2, "upstreams": 2}
    assert as_admin["servers"] == {"math": "ok", "secretive": "ok"}
    assert rebound.status_code == 421
    assert metrics == {"none": 401, "ann": 403, "ops": 200}


async def test_a_session_answers_only_the_key_that_opened_it() -> None:
    gw = keyed()
    async with serve_gateway(gw) as url, httpx.AsyncClient() as http:
        opened = await http.post(url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {ANN}"})
        session = opened.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        same = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        own = await http.post(url, json=ping, headers={**same, "Authorization": f"Bearer {ANN}"})
        other = await http.post(url, json=ping, headers={**same, "Authorization": f"Bearer {BOB}"})
    assert opened.status_code == 200 and own.status_code == 200
    assert other.status_code == 404


async def test_a_revoked_keys_running_script_makes_no_more_calls() -> None:
    gw = keyed()
    code = ("out = []\nfor i in range(40):\n    r = try_call(\"math.slow\", seconds=0.05)\n"
            "    out.append(r[\"ok\"] or r[\"error\"])\nresult = out")
    results: list[str] = []
    async with gw:
        identity = await gw.keys.authenticate(await gw.keys.create("temp", None, ["math"]))
        assert identity is not None

        async def run() -> None:
            with acting_as(identity):
                results.append(text_of(await call(gw, "executeToolCode", {"code": code})))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.sleep(0.5)
            assert await gw.storage.revoke_key("temp")
    [text] = results
    assert "the key temp was revoked: no more calls are made with it" in text
    rows = [r for r in await gw.storage.query_audit(key="temp") if r.kind == "tool"]
    made = [r for r in rows if r.outcome == "ok"]
    refused = [r for r in rows if r.outcome == "KeyRevoked"]
    assert made and refused and len(made) + len(refused) == 40
    assert max(r.ts for r in made) < min(r.ts for r in refused)


async def test_one_key_cannot_take_every_session() -> None:
    gw = Gateway(make_config({"math": stdio("math_server")}, groups={"math": {"tools": ["math.*"]}},
                             keys={"ann": {"key": ANN, "groups": ["math"]}, "bob": {"key": BOB, "groups": ["math"]}},
                             gateway={"max_sessions_per_key": 3}))
    async with serve_gateway(gw) as url, httpx.AsyncClient() as http:
        async def opened(key: str) -> httpx.Response:
            return await http.post(url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {key}"})

        ann = [await opened(ANN) for _ in range(4)]
        bob = await opened(BOB)
        first = ann[0].headers["mcp-session-id"]
        closed = await http.delete(url, headers={"Authorization": f"Bearer {ANN}", "Mcp-Session-Id": first,
                                                 "MCP-Protocol-Version": "2025-11-25"})
        again = await opened(ANN)
    assert [r.status_code for r in ann] == [200, 200, 200, 503] and "Too many open sessions" in ann[3].text
    assert bob.status_code == 200
    assert closed.status_code in (200, 204) and again.status_code == 200


async def test_a_key_that_sees_no_code_mode_server_is_told_why() -> None:
    gw = keyed()
    async with gw:
        nothing = await gw.keys.authenticate(ADMIN)  # an admin key: admin gives no tools
        assert nothing is not None
        with acting_as(nothing):
            listing = text_of(await call(gw, "listToolFiles", {}))
        ann = await gw.keys.authenticate(ANN)
        assert ann is not None
        with acting_as(ann):
            mine = text_of(await call(gw, "listToolFiles", {}))
    assert listing.startswith("No code-mode server is visible to this key: its team and groups allow none")
    assert "math" in mine and "secretive" not in mine
