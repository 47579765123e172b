"""The dashboard over real HTTP on a served gateway: only admin keys get in (header or session
cookie), every answer has a strict CSP, names and arguments from upstreams are shown as text, and
the calls page's filters, nesting and keyset pages match the audit rows real calls made; a script's row
shows its source and what it returned (redacted), the live poll gives only newer rows, and the upstreams
page lists a failed-then-ready upstream's reconnect history."""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys
import tempfile
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
from mcp_gateway.upstream_client import where
from tests.helpers import eventually, key_client, make_config, serve_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

ADMIN, ANN, BOB = "admin-key-0123456789", "ann-key-0123456789ab", "bob-key-0123456789ab"
HOSTILE = "<script>alert(1)</script>"
PAGES = ["/ui/", "/ui/upstreams", "/ui/calls", "/ui/calls?key=ann&window=1h", "/ui/access",
         "/ui/access?subject=key:ann"]
MARKUP = {"command": sys.executable, "args": [str(Path(__file__).parent / "markup_server.py")]}
SECRET = "hunter2-do-not-show"


def flaky() -> dict[str, Any]:
    """An upstream that fails its first start (markup in its reason) and is ready from its second."""
    marker = Path(tempfile.mkdtemp(prefix="flaky-")) / "started"
    return {"command": sys.executable, "args": [str(Path(__file__).parent / "flaky_server.py"), str(marker)]}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def config(**dashboard: Any) -> Any:
    return make_config(
        {"math": stdio("math_server"), "markup": MARKUP, "flaky": flaky()},
        gateway={"audit_arguments": True, "reconnect_initial_s": 0.2},
        dashboard={"enabled": True, **dashboard},
        groups={"math": {"tools": ["math.*"]}, "all": {"tools": ["*"]}},
        teams={"data": {"groups": ["math"]}},
        keys={"ops": {"key": ADMIN, "admin": True, "groups": ["all"]}, "ann": {"key": ANN, "team": "data"},
              "bob": {"key": BOB, "groups": ["math"], "deny": ["math.fail"]}},
    )


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[Gateway, str]]:
    """One gateway for the module, with audit rows from real calls: ann runs a script of three calls that
    returns a value holding a secret, and one direct meta call; ops runs a script calling the markup tools
    with markup arguments and printing markup. The flaky upstream has failed once and is ready again."""
    gw = Gateway(config(page_rows=10))
    async with serve_gateway(gw) as url:
        async with key_client(url, ANN) as ann:
            await ann.call_tool("listToolFiles", {})
            out = await ann.call_tool("executeToolCode", {
                "code": "a = math.add(a=1, b=2)\nb = math.add(a=a, b=3)\nprint(try_call('math.fail', message='no'))\n"
                        f"result = {{'sum': b, 'password': '{SECRET}'}}"})
            assert "ok" in text_of(out)
        async with key_client(url, ADMIN) as ops:
            await ops.call_tool("executeToolCode", {
                "code": f"try_call('markup.{HOSTILE}', text='{HOSTILE}')\ntry_call('markup.explode', text='x')\n"
                        "print('<img src=x onerror=alert(3)>')"})
        await eventually(lambda: gw.upstream("flaky").state == "ready")
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


async def test_every_answer_has_a_strict_csp_and_no_inline_script(served: tuple[Gateway, str]) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        answers = [await http.get(p) for p in PAGES]
        answers += [await http.get("/ui/calls-rows", params={"after": "0"}), await http.get("/ui/login"),
                    await http.get("/ui/static/calls.js"), await http.get("/ui/static/dashboard.css"),
                    await http.get("/ui/calls", headers={"X-API-Key": ANN})]
    for r in answers:
        assert r.headers["content-security-policy"] == CSP
        assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP and "connect-src 'self'" in CSP
        assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in r.text and "https://" not in r.text
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", r.text, re.S | re.I)
        assert r.text.lower().count("<script") == len(scripts) and all(s == "" for s in scripts)  # none inline
        live = r.request.url.path == "/ui/calls" and r.status_code == 200 and "before" not in str(r.request.url)
        assert re.findall(r'<script src="([^"]+)"', r.text) == (["static/calls.js?v=" + _digest("calls.js")]
                                                                 if live else [])
    assert answers[-3].headers["content-type"].startswith("text/javascript")
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
        assert "<img" not in page and "<script>" not in page
    assert "&lt;img src=x onerror=alert(3)&gt;" in calls  # what the script printed
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


def _digest(name: str) -> str:
    body = (Path(__file__).parents[2] / "mcp_gateway" / "dashboard" / "static" / name).read_bytes()
    return hashlib.sha256(body).hexdigest()[:12]


async def test_the_upstreams_page_lists_each_upstreams_reconnect_history(served: tuple[Gateway, str]) -> None:
    gw, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        text = (await http.get("/ui/upstreams")).text

    def history(server: str) -> list[tuple[str, str, str]]:
        block = re.search(rf'<tr class="history" data-server="{server}">(.*?)</details>', text, re.S)
        assert block is not None, server
        return [(event, replica, html.unescape(detail)) for event, replica, detail in re.findall(
            r'data-event="(\w+)"><td>[^<]+</td><td>([^<]*)</td><td class="event">[^<]+</td>'
            r'<td class="detail">([^<]*)</td>', block.group(1))]

    flaky = history("flaky")
    assert [(e, r) for e, r, _ in flaky] == [("ready", gw.replica), ("retrying", gw.replica), ("failed", gw.replica)]
    assert flaky[0][2] == "1 tool" and flaky[1][2].startswith("attempt 1 in ")
    named = where(gw.upstream("flaky").config)  # the command, cut to a width: how long depends on the checkout's path
    assert "flaky_server" in named or named.endswith("…`")
    assert flaky[2][2].startswith(named) and "exited" in flaky[2][2]  # the failure's reason
    assert history("math") == [("ready", gw.replica, f"{len(gw.upstream('math').tools)} tools")]
    assert "connected" in text and "reconnect scheduled" in text


async def test_a_script_row_shows_its_source_and_what_it_returned(served: tuple[Gateway, str]) -> None:
    gw, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        pages = [(await http.get("/ui/calls", params=p)).text
                 for p in ({"key": "ann"}, {"key": "ops"}, {"tool": "executeToolCode"})]
    rows = {r.key: r for r in await gw.storage.query_audit(tool="executeToolCode")}
    for key, page in (("ann", pages[0]), ("ops", pages[1])):
        [source] = re.findall(r'<pre class="source">(.*?)</pre>', page, re.S)
        [result] = re.findall(r'<pre class="result">(.*?)</pre>', page, re.S)
        assert html.unescape(source) == json.loads(rows[key].arguments or "")["code"]
        assert html.unescape(result) == rows[key].result
    ann_result = rows["ann"].result or ""
    assert 'result = {"sum": 6, "password": "[redacted]"}' in ann_result and "math.fail returned an error" in ann_result
    assert "'password': \"[redacted]\"" in (rows["ann"].arguments or "").replace('\\"', '"')
    assert rows["ops"].result == "<img src=x onerror=alert(3)>"  # stored as it was printed, shown as text
    assert "&lt;img src=x onerror=alert(3)&gt;" in pages[1] and "<img" not in pages[1]
    assert pages[2].count('<pre class="source">') == pages[2].count('<pre class="result">') == 2  # flat, too
    assert all(SECRET not in page for page in pages)
    assert '<details><summary>arguments' not in pages[1].split('class="children"')[0]  # the source instead


async def test_the_live_rows_are_only_those_after_the_newest_shown(served: tuple[Gateway, str]) -> None:
    gw, base = served
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN}) as http:
        page = (await http.get("/ui/calls", params={"key": "ann"})).text
        newest = int(re.findall(r'data-newest="(\d+)"', page)[0])
        assert 'data-rows="calls-rows?key=ann&amp;window="' in page
        assert 'data-rows' not in (await http.get("/ui/calls", params={"before": str(newest)})).text  # not live
        assert (await http.get("/ui/calls-rows")).status_code == 400
        assert (await http.get("/ui/calls-rows", params={"after": "x"})).status_code == 400
        nothing = (await http.get("/ui/calls-rows", params={"after": str(newest), "key": "ann"})).text
        assert re.findall(r"data-id", nothing) == [] and f'data-newest="{newest}"' in nothing
        async with key_client(f"{base}/mcp", ANN) as ann:
            await ann.call_tool("executeToolCode", {"code": f"result = math.add(a=1, b=1)\nprint('{HOSTILE}')"})
            await ann.call_tool("listToolFiles", {})
        started = await gw.storage.write_audit(AuditRow(key="ann", team="data", endpoint="/mcp", kind="tool",
                                                        server="math", tool="slow", outcome="started", latency_ms=0))
        fresh = (await http.get("/ui/calls-rows", params={"after": str(newest), "key": "ann",
                                                            "open": f"{started},x"})).text
        others = (await http.get("/ui/calls-rows", params={"after": str(newest), "key": "ops"})).text
        await gw.storage.finish_audit(started, AuditRow(key="ann", team="data", endpoint="/mcp", kind="tool",
                                                        server="math", tool="slow", outcome="ok", latency_ms=9))
        done = (await http.get("/ui/calls-rows", params={"after": str(started), "open": str(started)})).text
    async with httpx.AsyncClient(base_url=base) as anyone:
        for headers, status in (({}, 401), ({"X-API-Key": ANN}, 403)):
            refused = await anyone.get("/ui/calls-rows", params={"after": "0"}, headers=headers)
            assert refused.status_code == status and "data-id" not in refused.text
    new, finished = fresh.split('data-part="done"')
    top = [int(i) for i in re.findall(r'class="call" data-id="(\d+)"', new)]
    assert len(top) == 3 and top == sorted(top, reverse=True) and min(top) > newest  # script, listing, started
    assert f'data-newest="{top[0]}"' in new and top[0] == started
    assert len(re.findall(r'class="child" data-id', new)) == 1  # the script's call, under it
    assert '<pre class="source">' in new and html.escape(HOSTILE, quote=False) in new and "<script" not in new
    assert "data-id" not in finished  # still started
    assert set(re.findall(r"<td>(ann|ops)</td>", others)) == {"ops"}  # another key's filter: its rows only
    [(row_id, outcome)] = re.findall(r'class="call" data-id="(\d+)" data-outcome="(\w+)"', done.split("data-part")[2])
    assert (int(row_id), outcome) == (started, "ok")  # asked about again: finished since
