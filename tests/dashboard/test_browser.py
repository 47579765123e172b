"""The dashboard in a real browser: Debian's Chromium (`/usr/bin/chromium`) driven by Playwright.

A user signs in through the login form, follows the navigation, filters the calls page and opens a
script's calls; every page loads with no console error, no page error and no failed request. The
gateway and its audit rows (from real calls) are `test_pages.served`. A screenshot of each page is
saved in `MCP_GATEWAY_SCREENSHOTS` when set (docs/dashboard is where the docs take them from), else
in pytest's temporary folder.

Without Chromium the tests skip, except where `MCP_GATEWAY_REQUIRE_CHROMIUM` is set (by .ci/run):
there they fail. Playwright's own browser download is never used (`executable_path`).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.routing import Mount, Route

from mcp_gateway import Gateway
from mcp_gateway.dashboard.routes import routes
from mcp_gateway.storage import AuditRow
from tests.dashboard.test_pages import ADMIN, ANN, BOB, HOSTILE, anyio_backend, served

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Locator,
        Page,
        Request,
        Response,
        async_playwright,
    )
except ImportError:  # the `test` extra installs it; an older venv may not have it yet
    async_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.anyio
__all__ = ["anyio_backend", "served"]  # module fixtures shared with test_pages (one gateway per module)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
UNGUARDED = {"/login", "/logout", "/provider", "/signed-in",  # signing in and out: no data
             "/static/dashboard.css", "/static/favicon.svg", "/static/calls.js"}
"""Chromium asks every new page's origin for an icon; the pages name none yet (the CSP's `img-src 'self'`
refuses a `data:` one), so the gateway's 404 for it is logged: the one console error let through."""


def needs(message: str) -> None:
    if os.environ.get("MCP_GATEWAY_REQUIRE_CHROMIUM"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module, with a fresh empty profile (Playwright's default)."""
    if async_playwright is None:
        needs("Playwright is not installed: .venv/bin/pip install -e '.[test]' (never `playwright install`)")
    if not os.access(CHROMIUM, os.X_OK):
        needs(f"no Chromium at {CHROMIUM}: apt-get install chromium (Debian's package; Playwright's download "
              "is not used)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("MCP_GATEWAY_SCREENSHOTS")
    if not folder:
        return tmp_path_factory.mktemp("screenshots")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


@dataclass
class User:
    """A browser context and its page, with every console error, page error and failed load seen in it."""

    context: BrowserContext
    page: Page
    base: str
    shots: Path
    refusals_expected: bool = False
    """Whether a page answered 401 or 403 (which Chromium logs as a console error) is expected."""
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self) -> None:
        def console(message: ConsoleMessage) -> None:
            failed = re.match(r"Failed to load resource: .* status of (\d+)", message.text)
            refusal = self.refusals_expected and failed is not None and failed.group(1) in ("401", "403")
            if message.type in ("error", "warning") and not refusal:
                self.problems.append(f"console {message.type}: {message.text} ({self.page.url})")

        def response(r: Response) -> None:
            if r.status >= 400 and r.request.resource_type != "document":
                self.problems.append(f"{r.status} for {r.url}")

        self.context.on("console", console)
        self.context.on("weberror", lambda e: self.problems.append(f"page error: {e.error}"))
        def failed(r: Request) -> None:
            if "/ui/calls-rows" in r.url and r.failure == "net::ERR_ABORTED":
                return  # a live poll under way when the page is left is cancelled by the browser: no fault
            self.problems.append(f"failed: {r.url} {r.failure}")

        self.context.on("requestfailed", failed)
        self.context.on("response", response)
        self.page.on("dialog", self._dialog)

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def open(self, path: str) -> Response:
        r = await self.page.goto(self.base + path)
        assert r is not None
        return r

    async def follow(self, target: Locator | str) -> Response:
        """Click a link or button (a locator or a selector) and wait for the page it loads."""
        async with self.page.expect_navigation() as nav:
            await (self.page.locator(target) if isinstance(target, str) else target).click()
        r = await nav.value
        assert r is not None
        return r

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=self.shots / f"{name}.png")

    async def styled(self) -> bool:
        """The stylesheet applied (a blocked or missing one leaves the header a block)."""
        return bool(await self.page.evaluate("getComputedStyle(document.querySelector('header')).display === 'flex'"))

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.page.url).query)

    async def ids(self, kind: str) -> list[int]:
        return [int(i) for i in await self.page.locator(f"tr.{kind}").evaluate_all(
            "rows => rows.map(r => r.dataset.id)")]


async def new_user(browser: Browser, base: str, shots: Path, **options: Any) -> User:
    context = await browser.new_context(viewport=VIEWPORT, **options)  # type: ignore[arg-type]
    user = User(context, await context.new_page(), base, shots, refusals_expected=True)
    user.watch()
    return user


@pytest.fixture
async def admin(browser: Browser, served: tuple[Gateway, str], shots: Path) -> AsyncIterator[User]:
    """Signed in with the admin key through the login form, as a person would; on the upstreams page."""
    user = await new_user(browser, served[1], shots)  # its first page is the sign-in form, answered with 401
    try:
        first = await user.open("/ui/")
        assert first.status == 401 and await user.page.locator("h1").inner_text() == "Sign in"
        await user.page.fill("#key", ADMIN)
        signed = await user.follow("form.login button")
        assert signed.status == 200 and user.page.url == served[1] + "/ui/"
        assert await user.page.locator("header form.signout span").inner_text() == "ops"
        user.refusals_expected = False  # from here on, even a refused page is a problem
        yield user
        assert user.problems == [] and user.dialogs == []
    finally:
        await user.context.close()


async def stored(gw: Gateway) -> list[AuditRow]:
    return await gw.storage.query_audit(limit=10_000)


def top_level(rows: list[AuditRow]) -> list[AuditRow]:
    """The rows the calls page lists without a server, tool or outcome filter (a script's calls go under it)."""
    return [r for r in rows if r.execution_id is None or r.kind == "meta"]


async def test_each_page_loads_with_no_console_error(browser: Browser, served: tuple[Gateway, str],
                                                     shots: Path) -> None:
    outsider = await new_user(browser, served[1], shots)
    await outsider.open("/ui/login")
    assert await outsider.styled() and await outsider.page.locator("#key").is_visible()
    await outsider.shot("login")
    await outsider.context.close()
    assert outsider.problems == []

    user = await new_user(browser, served[1], shots)
    await user.open("/ui/")
    await user.page.fill("#key", ADMIN)
    await user.follow("form.login button")
    user.refusals_expected = False
    nav = user.page.locator("header nav a")
    names = [n.strip() for n in await nav.all_inner_texts()]
    assert {"Upstreams", "Calls", "Access"} <= set(names)
    for name in names:  # every page of the navigation, also ones added later
        r = await user.follow(nav.get_by_text(name, exact=True))
        assert r.status == 200, name
        assert await user.styled(), name
        assert await user.page.locator("header nav a[aria-current=page]").inner_text() == name
        assert await user.page.locator("main h1").count() == 1
        await user.shot(name.lower())
    await user.follow(user.page.get_by_role("link", name="ann", exact=True))
    assert user.query() == {"subject": ["key:ann"]}
    assert await user.page.locator("main h2").inner_text() == "config key ann"
    assert await user.page.locator("table.access tr.allowed").count() > 0
    await user.shot("access-key")
    out = await user.follow("form.signout button")
    assert out.status == 200 and user.page.url.endswith("/ui/login")
    await user.context.close()
    assert user.problems == [] and user.dialogs == []


async def test_filters_change_what_is_shown_and_counts_match_the_audit(admin: User,
                                                                      served: tuple[Gateway, str]) -> None:
    rows = await stored(served[0])
    page = admin.page
    await admin.follow(page.get_by_role("link", name="Calls", exact=True))
    everything = await admin.ids("call")
    assert len(everything) == len(top_level(rows)) == 3  # ann's listToolFiles and script, ops's script

    async def apply(**fields: str) -> tuple[list[int], list[int]]:
        for name in ("key", "team", "server", "tool", "outcome"):
            await page.fill(f"form.filters input[name={name}]", fields.get(name, ""))
        await page.select_option("form.filters select[name=window]", fields.get("window", ""))
        await admin.follow("form.filters button[type=submit]")
        return await admin.ids("call"), await admin.ids("child")

    ann_top, ann_children = await apply(key="ann")
    assert admin.query()["key"] == ["ann"]
    ann = [r for r in rows if r.key == "ann"]
    assert len(ann_top) == len(top_level(ann)) == 2
    assert len(ann_children) == len(ann) - len(top_level(ann)) == 3
    assert set(await page.locator("tr.call td:nth-child(3)").all_inner_texts()) == {"ann"}

    errors, _ = await apply(outcome="tool_error", window="1h")
    assert len(errors) == sum(r.outcome == "tool_error" for r in rows) == 2  # math.fail, markup.explode
    assert set(await page.locator("tr.call td.outcome").all_inner_texts()) == {"tool_error"}

    team, _ = await apply(team="data", tool="add")
    assert len(team) == sum(r.team == "data" and r.tool == "add" for r in rows) == 2  # a script's calls, flat
    assert await page.locator("tr.children").count() == 0

    nobody, _ = await apply(key="nobody")
    assert nobody == [] and await page.get_by_text("No calls match.").is_visible()

    await admin.follow(page.get_by_role("link", name="clear"))
    assert await admin.ids("call") == everything and admin.query() == {}
    assert await page.input_value("form.filters input[name=key]") == ""

    await admin.follow(page.get_by_role("link", name="Upstreams", exact=True))
    await admin.follow(page.get_by_role("link", name="math", exact=True))
    assert admin.query() == {"server": ["math"]}
    assert await page.input_value("form.filters input[name=server]") == "math"
    assert len(await admin.ids("call")) == sum(r.server == "math" for r in rows) == 3


async def test_a_scripts_nested_calls_expand(admin: User, served: tuple[Gateway, str]) -> None:
    rows = await stored(served[0])
    page = admin.page
    await admin.follow(page.get_by_role("link", name="Calls", exact=True))
    await page.fill("form.filters input[name=key]", "ann")
    await admin.follow("form.filters button[type=submit]")
    script = next(r for r in rows if r.key == "ann" and r.tool == "executeToolCode")
    made = [r for r in rows if r.execution_id == script.execution_id and r.kind != "meta"]
    block = page.locator("tr.children > td > details")
    assert await block.count() == 1
    summary = block.locator(":scope > summary")
    assert await summary.inner_text() == f"{len(made)} calls made by script {script.execution_id}"
    children = block.locator("tr.child")
    assert await children.count() == len(made) == 3
    await admin.shot("calls-script")
    await summary.click()  # folded
    assert not await children.first.is_visible()
    await summary.click()  # and open again, oldest first as the script made them
    assert await children.first.is_visible()
    assert await children.locator("td.tool").all_inner_texts() == [r.tool for r in made] == ["add", "add", "fail"]
    assert await children.locator("td.outcome").all_inner_texts() == ["ok", "ok", "tool_error"]
    arguments = children.first.locator("details")
    assert not await arguments.locator("pre").is_visible()
    await arguments.locator("summary").click()
    assert re.search(r'"a":\s*1', await arguments.locator("pre").inner_text())


async def test_a_non_admin_key_gets_403_on_every_route(browser: Browser, served: tuple[Gateway, str],
                                                       shots: Path) -> None:
    gw, base = served
    mount = next(r for r in routes(gw) if isinstance(r, Mount))
    guarded = [r.path for r in mount.routes if isinstance(r, Route) and "GET" in (r.methods or ())
               and r.path not in UNGUARDED]
    assert {"/", "/upstreams", "/calls", "/access"} <= set(guarded)
    paths = [f"/ui{p}" for p in guarded] + ["/ui/calls?key=ann&window=1h", "/ui/access?subject=key:ann"]

    user = await new_user(browser, base, shots)
    await user.open("/ui/login")
    await user.page.fill("#key", ANN)
    refused = await user.follow("form.login button")
    assert refused.status == 403
    assert await user.page.get_by_role("alert").inner_text() == "key ann is not an admin key (admin = true)"
    assert await user.context.cookies() == []
    for path in paths:
        r = await user.open(path)
        assert r.status == 401, path  # no session came of it
    await user.context.close()

    for header in ({"Authorization": f"Bearer {ANN}"}, {"X-API-Key": BOB}):
        user = await new_user(browser, base, shots, extra_http_headers=header)
        for path in paths:
            r = await user.open(path)
            assert r.status == 403, (path, header)
            assert await user.page.locator("h1").inner_text() == "Not an admin key"
            assert await user.page.locator("table, tr[data-id], nav").count() == 0
            assert await user.styled()
        if "X-API-Key" in header:
            await user.shot("refused")
        await user.context.close()
        assert user.problems == []


async def test_markup_from_an_upstream_is_shown_as_text(admin: User) -> None:
    page = admin.page
    await admin.follow(page.get_by_role("link", name="Calls", exact=True))
    await page.fill("form.filters input[name=server]", "markup")
    await admin.follow("form.filters button[type=submit]")
    tools = await page.locator("tr.call td.tool").all_inner_texts()
    assert sorted(tools) == sorted([HOSTILE, "explode"])
    hostile = page.locator("tr.call", has=page.locator("td.tool", has_text=HOSTILE))
    await hostile.locator("details summary").click()
    assert HOSTILE in await hostile.locator("details pre").inner_text()  # the argument, as text
    errors = await page.locator("pre.error").all_inner_texts()
    assert any("<img src=x onerror=alert(2)>" in e for e in errors)
    await admin.shot("calls-markup")

    await admin.follow(page.get_by_role("link", name="Access", exact=True))
    await admin.follow(page.get_by_role("link", name="ops", exact=True))
    assert HOSTILE in await page.locator("table.access td.tool").all_inner_texts()
    assert await page.locator("script, img, b").count() == 0  # no element came of any name or text
    assert admin.dialogs == []
