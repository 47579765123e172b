"""The dashboard's newer parts in a real browser (Chromium, as in `test_browser`): the calls page takes new
calls without a reload and pauses while its filters are edited, a script's row shows its source and what
it returned as text, and the upstreams page lists a failed-then-ready upstream's reconnect history.
Every page loads with no console error, page error or failed request (the `admin` fixture checks)."""

from __future__ import annotations

import json
import re

import anyio
import pytest

from mcp_gateway import Gateway
from mcp_gateway.storage.base import AuditFilter
from tests.dashboard.test_browser import User, admin, browser, shots
from tests.dashboard.test_pages import ANN, HOSTILE, SECRET, anyio_backend, served
from tests.helpers import key_client

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture skips (or fails, in CI) without Playwright
    expect = None  # type: ignore[assignment]

pytestmark = pytest.mark.anyio
__all__ = ["admin", "anyio_backend", "browser", "served", "shots"]  # fixtures shared with test_pages/test_browser

MARKUP_CODE = ("print('<b>bold</b> <img src=x onerror=alert(4)>')\n"
               f"result = {{'html': '<script>alert(5)</script>', 'token': '{SECRET}', 'n': math.add(a=20, b=22)}}")


async def newest(gw: Gateway, key: str, tool: str) -> int:
    """The id of `key`'s newest call of `tool`."""
    return (await gw.storage.audit_page(AuditFilter(key=key, tool=tool), limit=1))[0].id


async def test_a_new_call_appears_at_the_top_without_a_reload(admin: User, served: tuple[Gateway, str]) -> None:
    gw, base = served
    page = admin.page
    await admin.follow(page.get_by_role("link", name="Calls", exact=True))
    status = page.locator("p.live")
    assert await status.is_visible() and (await status.inner_text()).startswith("Live:")
    await page.evaluate("window.kept = 'the same page'")
    first = await admin.ids("call")
    async with key_client(f"{base}/mcp", ANN) as ann:
        out = await ann.call_tool("executeToolCode", {"code": MARKUP_CODE})
        assert not out.is_error
    script = await newest(gw, "ann", "executeToolCode")
    row = page.locator(f'tr.call[data-id="{script}"]')
    await row.wait_for(timeout=15_000)
    assert await page.evaluate("window.kept") == "the same page"  # no reload, no navigation
    now = await admin.ids("call")
    assert now[0] == script and now[1:] == first and await row.get_attribute("class") == "call arrived"
    source = page.locator(f'tr.script[data-of="{script}"] pre.source')
    returned = page.locator(f'tr.script[data-of="{script}"] pre.result')
    assert await source.inner_text() == MARKUP_CODE.replace(f"'{SECRET}'", '"[redacted]"')
    assert (await returned.inner_text()).splitlines() == [
        "<b>bold</b> <img src=x onerror=alert(4)>",
        'result = {"html": "<script>alert(5)</script>", "token": "[redacted]", "n": 42}']
    children = page.locator(f'tr.children[data-of="{script}"] tr.child td.tool')
    assert await children.all_inner_texts() == ["add"]
    assert await page.locator("main b, main img, main script").count() == 0  # markup came as text only
    assert SECRET not in await page.content()
    await admin.shot("calls-live")

    key = page.locator("form.filters input[name=key]")
    await key.fill("ann")  # being edited, not applied: the rows shown would no longer be the ones asked for
    await expect(status).to_contain_text("paused while the filters are being edited", timeout=10_000)
    async with key_client(f"{base}/mcp", ANN) as ann:
        await ann.call_tool("listToolFiles", {})
    listing = await newest(gw, "ann", "listToolFiles")
    await anyio.sleep(4)  # more than one poll interval
    assert await page.locator(f'tr.call[data-id="{listing}"]').count() == 0
    await key.fill("")  # back as applied, and the focus elsewhere: live again
    await page.locator("h1").click()
    await page.locator(f'tr.call[data-id="{listing}"]').wait_for(timeout=15_000)
    assert (await admin.ids("call"))[:2] == [listing, script] and admin.dialogs == []


async def test_a_scripts_source_and_result_are_shown_as_text(admin: User, served: tuple[Gateway, str]) -> None:
    gw, _ = served
    page = admin.page
    await admin.follow(page.get_by_role("link", name="Calls", exact=True))
    await page.fill("form.filters input[name=key]", "ops")
    await admin.follow("form.filters button[type=submit]")
    [ops] = [r for r in await gw.storage.query_audit(key="ops") if r.tool == "executeToolCode"]
    block = page.locator("tr.script")
    assert await block.count() == 1
    assert await block.locator("pre.source").inner_text() == json.loads(ops.arguments or "")["code"]
    assert HOSTILE in await block.locator("pre.source").inner_text()
    assert await block.locator("pre.result").inner_text() == "<img src=x onerror=alert(3)>"
    await block.locator("details.source > summary").click()  # each folds on its own
    assert not await block.locator("pre.source").is_visible() and await block.locator("pre.result").is_visible()
    assert await page.locator("main img, main script").count() == 0 and admin.dialogs == []


async def test_the_reconnect_history_shows_a_failed_then_ready_upstream(admin: User) -> None:
    page = admin.page
    history = page.locator('tr.history[data-server="flaky"]')
    details = history.locator("details")
    assert await details.get_attribute("open") is None  # ready: folded
    await details.locator("summary").click()
    rows = history.locator("table.history tbody tr")
    assert await rows.locator("td.event").all_inner_texts() == ["connected", "reconnect scheduled", "failed"]
    details_text = await rows.locator("td.detail").all_inner_texts()
    assert details_text[0] == "1 tool" and re.fullmatch(r"attempt 1 in \d+\.\d s", details_text[1])
    assert "exited" in details_text[2]
    times = await rows.locator("td:first-child").all_inner_texts()
    assert times == sorted(times, reverse=True)
    assert await page.locator('tr.state-ready td a[href="calls?server=flaky"]').count() == 1
    await history.scroll_into_view_if_needed()
    await admin.shot("upstreams-history")
