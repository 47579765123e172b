"""What the upstreams and calls pages add to the store: each upstream's state changes (on both backends,
booked without ever making an upstream wait for the store) and what a script returned (redacted and
bounded as arguments are, and only with `audit_arguments`)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

import mcp_gateway.upstream_history as history_module
from mcp_gateway import Gateway, call
from mcp_gateway.config import GatewaySettings
from mcp_gateway.governance.audit import Auditor
from mcp_gateway.governance.identity import Identity
from mcp_gateway.storage import Storage, StorageUnavailable
from mcp_gateway.storage.events import UpstreamEvent
from mcp_gateway.upstream import Upstream
from mcp_gateway.upstream_history import UpstreamHistory
from tests.helpers import eventually, make_config, stdio
from tests.stores import BACKENDS, Cuttable, open_store, postgres_schema

pytestmark = pytest.mark.anyio

FLAKY = Path(__file__).parent / "flaky_server.py"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as s:
        yield s


def flaky() -> dict[str, Any]:
    marker = Path(tempfile.mkdtemp(prefix="flaky-")) / "started"
    return {"command": sys.executable, "args": [str(FLAKY), str(marker)]}


async def test_events_are_read_newest_first_per_server_and_pruned(store: Storage) -> None:
    now = time.time()
    await store.add_upstream_events([UpstreamEvent(now - 100 + i, "math", f"r{i % 2}", "failed", f"<b>{i}</b>")
                                     for i in range(30)])
    await store.add_upstream_events([UpstreamEvent(now - 50, "text", "r0", "ready", "2 tools"),
                                     UpstreamEvent(now - 60, "text", None, "retrying", "attempt 1 in 0.5 s"),
                                     UpstreamEvent(now - 90 * 86400, "old", "r0", "stopped")])
    found = await store.upstream_events(["text", "math", "nobody"], 20)
    assert [e.server for e in found] == ["text"] * 2 + ["math"] * 20  # in the order asked, each newest first
    assert [e.detail for e in found[2:5]] == ["<b>29</b>", "<b>28</b>", "<b>27</b>"]
    assert found[0] == UpstreamEvent(now - 50, "text", "r0", "ready", "2 tools")
    assert found[1].replica is None and found[1].event == "retrying"
    assert await store.upstream_events([], 20) == []
    assert len(await store.upstream_events(["old"], 20)) == 1
    await store.prune(0.0, now - 40 * 86400)  # audit rows kept forever: events still go after 40 days
    assert await store.upstream_events(["old"], 20) == []
    await store.prune(now - 75, now - 40 * 86400)  # a shorter audit retention applies to them too
    assert [e.detail for e in await store.upstream_events(["math"], 100)][-1] == "<b>25</b>"
    assert len(await store.upstream_events(["text"], 5)) == 2


class DownStore:
    """A store whose writes fail, as one that cannot be reached."""

    writes = 0

    async def add_upstream_events(self, events: list[UpstreamEvent]) -> None:
        self.writes += 1
        raise StorageUnavailable("down")


async def test_booking_never_waits_and_keeps_what_the_store_refused(store: Storage,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_module, "MAX_PENDING", 5)
    down = DownStore()
    book = UpstreamHistory(down, "r1")  # type: ignore[arg-type]
    up = Upstream("math", make_config({"math": stdio("math_server")}).servers["math"])
    for i in range(4):
        book.book(up, "failed", f"reason {i} " + "x" * 2000)
    assert down.writes == 0  # booking is an append: the upstream's loop never waits for the store
    await book.flush()  # refused: kept
    assert down.writes == 1
    up.tools = [types.Tool(name="add", input_schema={"type": "object"})]
    book.book(up, "ready", None)
    book.book(up, "stopped", None)  # six kept events: the oldest is dropped
    assert book.dropped == 1
    book.storage = store
    await book.flush()
    await book.flush()  # nothing left: nothing written twice
    found = await store.upstream_events(["math"], 10)
    assert [(e.event, (e.detail or "")[:8]) for e in found] == [("stopped", ""), ("ready", "1 tool"),
                                                                ("failed", "reason 3"), ("failed", "reason 2"),
                                                                ("failed", "reason 1")]
    assert {e.replica for e in found} == {"r1"} and len(found[2].detail or "") == history_module.MAX_DETAIL_CHARS


async def test_an_upstream_reconnects_while_the_store_is_down_and_its_history_is_written_later() -> None:
    proxy = Cuttable()
    async with postgres_schema() as url, anyio.create_task_group() as tg:
        config = make_config({"flaky": flaky()}, storage={"url": proxy.through(url), "connect_timeout_s": 2},
                             gateway={"reconnect_initial_s": 0.1})
        async with Gateway(config) as gw:  # the store refuses every connection from the start
            up = gw.upstream("flaky")
            with anyio.fail_after(20):
                await eventually(lambda: up.state == "ready")
            assert gw.upstream_history.dropped == 0
            await proxy.restore(tg)

            async def written() -> list[str]:
                try:
                    await gw.upstream_history.flush()
                    return [e.event for e in await gw.storage.upstream_events(["flaky"], 20)]
                except StorageUnavailable:
                    return []

            await eventually(written, 15)
            assert await written() == ["ready", "retrying", "failed"]
        tg.cancel_scope.cancel()


def answer(text: str, *blocks: types.ContentBlock) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text), *blocks])


async def test_a_scripts_row_keeps_what_it_returned_redacted_and_bounded(tmp_path: Path) -> None:
    settings = GatewaySettings(audit_arguments=True, audit_row_argument_bytes=200)
    auditor = Auditor(None, settings)  # type: ignore[arg-type]
    ann = Identity("ann")
    script = auditor.opened(ann, kind="meta", server=None, tool="executeToolCode", arguments={"code": "x = 1"})
    value = {"rows": 2, "api_key": {"id": 7}, "nested": [{"password": 12345}]}
    text = f'password = "p1"\nresult = {json.dumps(value)}\nError: token: "t1"'
    kept = auditor.returned(script, answer(text, types.ImageContent(data="AA==", mime_type="image/png")))
    assert kept == ('password = "[redacted]"\nresult = {"rows": 2, "api_key": "[redacted]", "nested": '
                    '[{"password": "[redacted]"}]}\nError: token: "[redacted]"\n'
                    "[and 1 returned blocks: images, audio or resources]")
    long = auditor.returned(script, answer("result = " + json.dumps("é" * 500)))
    assert long is not None and long.endswith("more bytes]") and len(long.split(" [cut:")[0].encode()) <= 200
    other = auditor.opened(ann, kind="tool", server="math", tool="add", arguments={})
    assert auditor.returned(other, answer("3")) is None  # only a script's row keeps its answer
    assert auditor.returned(script, None) is None
    off = Auditor(None, GatewaySettings())  # type: ignore[arg-type]
    assert off.returned(script, answer("result = 1")) is None  # arguments are not kept: nor is this


async def test_without_audit_arguments_a_script_row_stores_no_source_and_no_result() -> None:
    async with Gateway(make_config({"math": stdio("math_server")})) as gw:
        out = await call(gw, "executeToolCode", {"code": "result = math.add(a=1, b=2)"})
        assert not out.is_error
        [row] = [r for r in await gw.storage.query_audit() if r.tool == "executeToolCode"]
    assert row.arguments is None and row.result is None and row.outcome == "ok"
