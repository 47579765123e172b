"""The dashboard over real HTTP on a served gateway: only admin keys get in (header or session
cookie), every answer has a strict CSP, names and arguments from upstreams are shown as text, and
the calls page's filters, nesting and keyset pages match the audit rows real calls made."""

from __future__ import annotations

import html
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_gateway import Gateway
from mcp_gateway.catalog import restrict
from mcp_gateway.dashboard.routes import CSP
from mcp_gateway.governance.identity import identity_for
from mcp_gateway.storage import AuditRow
from tests.helpers import key_client, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

ADMIN, ANN, BOB = "admin-key-0123456789", "ann-key-0123456789ab", "bob-key-0123456789ab"
HOSTILE = "<script>alert(1)</script>"
PAGES = ["/ui/", "/ui/upstreams", "/ui/calls", "/ui/calls?key=ann&window=1h", "/ui/access",
         "/ui/access?subject=key:ann"]
MARKUP = {"command": sys.executable, "args": [str(Path(__file__).parent / "markup_server.py")]}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def config(**dashboard: Any) -> Any:
    return make_config(
        {"math": stdio("math_server"), "markup": MARKUP},
        gateway={"audit_arguments": True},
        dashboard={"enabled": True, **dashboard},
        groups={"math": {"tools": ["math.*"]}, "all": {"tools": ["*"]}},
        teams={"data": {"groups": ["math"]}},
        keys={"ops": {"key": ADMIN, "admin": True, "groups": ["all"]}, "ann": {"key": ANN, "team": "data"},
              "bob": {"key": BOB, "groups": ["math"], "deny": ["math.fail"]}},
    )


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[Gateway, str]]:
    """One gateway for the module, with audit rows from real calls: ann runs a script of three calls and
    one direct meta call; ops calls the markup tools with markup arguments."""
    gw = Gateway(config(page_rows=10))
    async with serve_gateway(gw) as url:
        async with key_client(url, ANN) as ann:
            await ann.call_tool("listToolFiles", {})
            out = await ann.call_tool("executeToolCode", {
                "code": "a = math.add(a=1, b=2)\nb = math.add(a=a, b=3)\nprint(try_call('math.fail', message='no'))"})
            assert "ok" in text_of(out)
        async with key_client(url, ADMIN) as ops:
            await ops.call_tool("executeToolCode", {
                "code": f"try_call('markup.{HOSTILE}', text='{HOSTILE}')\ntry_call('markup.explode', text='x')"})
        yield gw, url.removesuffix("/mcp")



async def test_no_key_and_a_non_admin_key_are_refused_on_every_route(served: tuple[Gateway, str]) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        for path in PAGES:
            none = await http.get(path)
            ann = await http.get(path, headers={"Authorization": f"Bearer {ANN}"})
            bob = await http.get(path, headers={"X-API-Key": BOB})
            wrong = await http.get(path, headers={"Authorization": "Bearer not-a-key-at-all-000"})
            forged = await http.get(path, cookies={"mgw_ui": "made-up-token"})
            admin = await http.get(path, headers={"X-API-Key": ADMIN})
            assert (none.status_code, ann.status_code, bob.status_code, wrong.status_code, forged.status_code,
                    admin.status_code) == (401, 403, 403, 401, 401, 200), path
            for refused in (none, ann, bob, wrong, forged):
                assert 'name="key"' in refused.text or "not an admin key" in refused.text
                assert "math" not in refused.text and "data-id" not in refused.text
        assert (await http.get("/ui/calls", headers={"Host": "evil.example"})).status_code == 421
        assert (await http.get("/ui", follow_redirects=True, headers={"X-API-Key": ADMIN})).status_code == 200


async def test_every_answer_has_a_strict_csp_and_no_script(served: tuple[Gateway, str]) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        answers = [await http.get(p) for p in PAGES]
        answers += [await http.get("/ui/login"), await http.get("/ui/static/dashboard.css"),
                    await http.get("/ui/calls", headers={"X-API-Key": ANN})]
    for r in answers:
        assert r.headers["content-security-policy"] == CSP
        assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in r.text.lower() and "http://" not in r.text and "https://" not in r.text
    assert answers[-2].headers["content-type"].startswith("text/css")


async def test_markup_from_upstreams_is_shown_as_text(served: tuple[Gateway, str]) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        calls = (await http.get("/ui/calls", params={"key": "ops"})).text
        flat = (await http.get("/ui/calls", params={"server": "markup"})).text
        access = (await http.get("/ui/access", params={"subject": "key:ops"})).text
    for page in (calls, flat):
        assert html.escape(HOSTILE, quote=False) in page  # the tool name, and the argument
        assert "&lt;img src=x onerror=alert(2)&gt;" in page  # the upstream's error text
        assert "<img" not in page and "<script" not in page
    assert html.escape(HOSTILE, quote=False) in access and "<script" not in access


async def test_sign_in_with_an_admin_key_gives_a_strict_session_cookie(served: tuple[Gateway, str]) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        wrong = await http.post("/ui/login", data={"key": "not-a-key-at-all-000"})
        user = await http.post("/ui/login", data={"key": ANN})
        cross = await http.post("/ui/login", data={"key": ADMIN}, headers={"Sec-Fetch-Site": "cross-site"})
        assert (wrong.status_code, user.status_code, cross.status_code) == (401, 403, 403)
        assert "set-cookie" not in wrong.headers and "set-cookie" not in user.headers
        assert "set-cookie" not in cross.headers
        signed = await http.post("/ui/login", data={"key": ADMIN})
        assert signed.status_code == 303 and signed.headers["location"] == "./"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Secure" not in cookie and ADMIN not in cookie
        page = await http.get("/ui/calls")
        assert page.status_code == 200 and "data-id" in page.text and ">ops<" in page.text
        out = await http.post("/ui/logout")
        assert out.status_code == 303
        token = cookie.split(";")[0].split("=", 1)[1]
        assert (await http.get("/ui/calls", cookies={"mgw_ui": token})).status_code == 401
        behind_tls = await http.post("/ui/login", data={"key": ADMIN}, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in behind_tls.headers["set-cookie"]


async def test_the_calls_filters_and_nesting_match_the_audit_rows(served: tuple[Gateway, str]) -> None:
    gw, base = served
    stored = await gw.storage.query_audit(limit=10_000)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:

        async def ids(**params: str) -> tuple[list[int], list[int]]:
            text = (await http.get("/ui/calls", params=params)).text
            return ([int(i) for i in re.findall(r'class="call" data-id="(\d+)"', text)],
                    [int(i) for i in re.findall(r'class="child" data-id="(\d+)"', text)])

        ann_top, ann_children = await ids(key="ann")
        add_top, add_children = await ids(tool="add", window="1h")
        errors, _ = await ids(outcome="tool_error")
        none, _ = await ids(team="nobody")
    ann = [r for r in stored if r.key == "ann"]
    assert len(ann_top) == sum(r.execution_id is None or r.kind == "meta" for r in ann) == 2  # listToolFiles, script
    assert len(ann_children) == 3 and sorted(ann_children) == ann_children  # the script's calls, in order
    assert ann_top == sorted(ann_top, reverse=True)
    assert len(add_top) == 2 and add_children == []  # a tool filter lists the script's calls themselves
    assert len(errors) == sum(r.outcome == "tool_error" for r in stored) == 2  # math.fail, markup.explode
    assert none == []


async def test_keyset_pages_walk_every_row_once(served: tuple[Gateway, str]) -> None:
    gw, base = served
    for i in range(25):
        await gw.storage.write_audit(AuditRow(key="paging", team=None, endpoint="/mcp", kind="meta", server=None,
                                              tool="listToolFiles", outcome="ok", latency_ms=float(i)))
    seen: list[int] = []
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        path: str | None = "/ui/calls?key=paging"
        pages = []
        while path is not None:
            text = (await http.get(path)).text
            pages.append(text)
            seen += [int(i) for i in re.findall(r'data-id="(\d+)"', text)]
            older = re.search(r'rel="next" href="([^"]+)"', text)
            path = "/ui/" + html.unescape(older.group(1)) if older else None
        assert [len(re.findall("data-id", p)) for p in pages] == [10, 10, 5]
        newer = re.search(r'rel="prev" href="([^"]+)"', pages[-1])
        assert newer is not None
        back = (await http.get("/ui/" + html.unescape(newer.group(1)))).text
    assert len(seen) == 25 and seen == sorted(set(seen), reverse=True)
    assert [int(i) for i in re.findall(r'data-id="(\d+)"', back)] == seen[10:20]


async def test_the_access_page_agrees_with_the_allowlist(served: tuple[Gateway, str]) -> None:
    gw, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        pages = {s: (await http.get("/ui/access", params={"subject": s})).text
                 for s in ("key:ops", "key:ann", "key:bob", "team:data", "group:math")}
        summary = (await http.get("/ui/access")).text
    keys = gw.config.keys
    for subject, page in pages.items():
        kind, name = subject.split(":")
        if kind == "key":
            k = keys[name]
            identity = identity_for(gw.config, name, k.team, k.groups, k.remove_groups, k.deny, k.admin)
        else:
            team, groups = (name, []) if kind == "team" else (None, [name])
            identity = identity_for(gw.config, name, team, groups)
        expected = {f"{e.server}.{e.tool.name}" for e in restrict(gw.full_catalog, identity, "server").entries}
        shown = {html.unescape(t) for t in re.findall(r'class="allowed" data-tool="([^"]+)"', page)}
        assert shown == expected, subject
    assert "math.fail" not in {html.unescape(t) for t in re.findall(r'class="allowed" data-tool="([^"]+)"',
                                                                      pages["key:bob"])}
    assert "denied by math.fail" in pages["key:bob"]
    assert "allowed by math.*" in pages["team:data"]
    assert 'data-tool="markup.explode"' in pages["key:ann"] and "no allow pattern matches" in pages["key:ann"]
    assert "ann" in summary and "data" in summary


async def test_the_upstreams_page_shows_state_and_last_hours_calls(served: tuple[Gateway, str]) -> None:
    gw, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        text = (await http.get("/ui/upstreams")).text
    stats = {s.server: s for s in await gw.storage.server_stats(0)}
    row = re.search(r'<tr class="state-ready">\s*<td><a href="calls\?server=math">math</a></td>(.*?)</tr>', text,
                    re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[:4] == ["stdio", "code", "ok", str(len(gw.upstream("math").tools))]
    assert cells[6] == str(stats["math"].calls) == "3"
    assert cells[7] == "33.3%"  # one of three calls failed


async def test_the_dashboard_is_off_unless_enabled() -> None:
    gw = Gateway(make_config({}, keys={"ops": {"key": ADMIN, "admin": True}}))
    async with serve_gateway(gw) as url, httpx.AsyncClient() as http:
        r = await http.get(url.removesuffix("/mcp") + "/ui/", headers={"X-API-Key": ADMIN})
    assert r.status_code == 404
