"""Governance: a hidden tool is indistinguishable from a missing one, on every path, for every trick."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from mcp import Client

from mcp_gateway import Gateway
from tests.helpers import key_client, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

ALICE, BOB, CAROL = "alice-key-0123456789", "bob-key-0123456789ab", "carol-key-0123456789"


def team_config() -> object:
    return make_config(
        {"math": stdio("math_server"), "text": stdio("text_server", mode="direct")},
        groups={"mathread": {"tools": ["math.add", "math.echo"]}, "texts": {"tools": ["text.*"]}},
        teams={"alpha": {"groups": ["mathread"]}, "beta": {"groups": ["texts"]}},
        keys={
            "alice": {"key": ALICE, "team": "alpha"},
            "bob": {"key": BOB, "team": "beta"},
            "carol": {"key": CAROL, "team": "alpha", "deny": ["math.echo"]},
        },
    )


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[tuple[Gateway, str]]:
    gw = Gateway(team_config())  # type: ignore[arg-type]
    async with serve_gateway(gw) as url:
        yield gw, url


async def run(client: Client, code: str) -> str:
    return text_of(await client.call_tool("executeToolCode", {"code": code}))


HIDDEN_SCRIPTS = [
    'result = text.count(text="a")',
    "result = math.fail()",
    'result = call_tool("math." + "fa" + "il")',
    'table = {"x": "text.count"}\nresult = call_tool(table["x"], text="a")',
    'r = try_call("math.slow", seconds=0)\nresult = r["error"]',
    'def p(**kw):\n    return call_tool("text.count", **kw)\nresult = p(text="a")',
    'def via(f, name):\n    return f(name)\nresult = via(call_tool, "math.wall_clock")',
    'result = call_tool("math.get-client", id="1")',
    'result = call_tool("text.upper", text="a")',
]


@pytest.mark.parametrize("code", HIDDEN_SCRIPTS)
async def test_scripts_cannot_reach_hidden_tools(gateway: tuple[Gateway, str], code: str) -> None:
    _, url = gateway
    async with key_client(url, ALICE) as alice:
        out = await run(alice, code)
        missing = await run(alice, 'result = call_tool("math.nosuchtool")')
    assert "unknown tool" in out or "(not a server; servers: math)" in out, out
    assert "unknown tool math.nosuchtool" in missing
    for hidden_word in ("slept", "dash:", "underscore:", "words", "A"):
        assert f'result = "{hidden_word}' not in out


async def test_every_meta_tool_hides_what_the_key_cannot_use(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    async with key_client(url, ALICE) as alice:
        names = [t.name for t in (await alice.list_tools()).tools]
        listing = text_of(await alice.call_tool("listToolFiles", {}))
        stub = text_of(await alice.call_tool("readToolFile", {"fileName": "servers/math.pyi"}))
        hidden_file = await alice.call_tool("readToolFile", {"fileName": "servers/text.pyi"})
        missing_file = await alice.call_tool("readToolFile", {"fileName": "servers/nothing.pyi"})
        docs_hidden = await alice.call_tool("getToolDocs", {"server": "math", "tool": "fail"})
        docs_missing = await alice.call_tool("getToolDocs", {"server": "math", "tool": "nothing"})
        direct_hidden = await alice.call_tool("text_count", {"text": "a"})
        direct_missing = await alice.call_tool("text_nothing", {})
        allowed = await run(alice, "result = math.add(a=1, b=2)")
    assert names == ["listToolFiles", "readToolFile", "getToolDocs", "executeToolCode"]
    assert "servers/math.pyi  (2 tools)" in listing and "text" not in listing
    assert "def add(" in stub and "def echo(" in stub and "fail" not in stub and "slow" not in stub
    assert hidden_file.is_error and missing_file.is_error
    assert text_of(hidden_file).replace("text", "X") == text_of(missing_file).replace("nothing", "X")
    assert docs_hidden.is_error and text_of(docs_hidden).startswith("unknown tool math.fail")
    assert docs_missing.is_error and text_of(docs_missing).startswith("unknown tool math.nothing")
    assert direct_hidden.is_error and text_of(direct_hidden).startswith("unknown tool text_count")
    assert direct_missing.is_error and text_of(direct_missing).startswith("unknown tool text_nothing")
    assert allowed == "result = 3"


async def test_other_team_sees_only_its_direct_tools(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    async with key_client(url, BOB) as bob:
        names = [t.name for t in (await bob.list_tools()).tools]
        listing = text_of(await bob.call_tool("listToolFiles", {}))
        hidden = await run(bob, "result = math.add(a=1, b=2)")
        ok = await bob.call_tool("text_upper", {"text": "ab"})
    assert "text_upper" in names and "text_count" in names
    assert "math" not in listing
    assert "undefined: math (not a server; servers: none)" in hidden and text_of(ok) == "AB"


async def test_deny_wins_over_the_teams_groups(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    async with key_client(url, CAROL) as carol:
        denied = await run(carol, 'result = math.echo(text="x")')
        stub = text_of(await carol.call_tool("readToolFile", {"fileName": "servers/math.pyi"}))
        allowed = await run(carol, "result = math.add(a=2, b=2)")
    assert "unknown tool math.echo" in denied and "echo" not in stub and allowed == "result = 4"


async def test_group_endpoints_intersect_with_the_key(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    async with key_client(url + "/texts", ALICE) as alice_at_texts, key_client(url + "/texts", BOB) as bob_at_texts:
        alice_names = [t.name for t in (await alice_at_texts.list_tools()).tools]
        alice_call = await alice_at_texts.call_tool("text_count", {"text": "a b"})
        alice_math = await run(alice_at_texts, "result = math.add(a=1, b=1)")
        bob_call = await bob_at_texts.call_tool("text_count", {"text": "a b"})
    assert not any(n.startswith("text_") for n in alice_names)
    assert alice_call.is_error and "unknown tool" in text_of(alice_call)
    assert "undefined: math (not a server; servers: none)" in alice_math
    assert not bob_call.is_error and bob_call.structured_content == {"words": 2, "chars": 3}


async def test_missing_wrong_and_revoked_keys_get_401(gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    secret = await gw.keys.create("dave", "alpha", [])
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient() as http:
        none = await http.post(url, json=body)
        wrong = await http.post(url, json=body, headers={"Authorization": "Bearer not-a-key-at-all-00"})
        unknown_group = await http.post(url + "/nogroup", json=body, headers={"X-API-Key": ALICE})
        well_known = await http.get(url.removesuffix("/mcp") + "/.well-known/oauth-protected-resource")
    assert none.status_code == 401 and none.json()["error"]["code"] == -32001
    assert wrong.status_code == 401 and unknown_group.status_code == 404 and well_known.status_code == 404
    async with key_client(url, secret) as dave:
        before = await run(dave, "result = math.add(a=1, b=1)")
        assert await gw.storage.revoke_key("dave")
        with pytest.raises(Exception):  # noqa: B017 - the transport raises for the 401
            await dave.call_tool("executeToolCode", {"code": "result = 1"})
    assert before == "result = 2"


async def test_every_call_is_audited_with_its_key(gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    before = len(await gw.storage.query_audit(limit=100000))
    async with key_client(url, ALICE) as alice:
        await run(alice, "result = [math.add(a=i, b=1) for i in range(5)]")
        await run(alice, 'result = call_tool("text.count", text="x")')
    rows = (await gw.storage.query_audit(limit=100000))[before:]
    tool_rows = [r for r in rows if r.kind == "tool"]
    meta_rows = [r for r in rows if r.kind == "meta"]
    assert len(meta_rows) == 2 and all(r.key == "alice" and r.team == "alpha" for r in rows)
    added, refused = tool_rows[:5], tool_rows[5:]
    assert all(r.tool == "add" and r.outcome == "ok" for r in added)
    assert [(r.server, r.tool, r.outcome) for r in refused] == [(None, "text.count", "UnknownTool")], "a refused call"
    assert {r.execution_id for r in added} == {meta_rows[0].execution_id} != {None}, "script row and its calls"
    assert refused[0].execution_id == meta_rows[1].execution_id
