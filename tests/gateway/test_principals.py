"""A signed-in user whose name claim equals an API key's name is another caller: the audit log tells them
apart, and neither fills, evicts or uses up what the gateway keeps per caller for the other (the script
queue, a paused script's journal, list-change and log trackers, resource subscriptions, the audit
argument budget, quotas). The user is built as a verified token's claims make it (`identity_of`); the key
as the key ring authenticates it."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged

from mcp_gateway import Gateway, GatewayConfig, acting_as, call
from mcp_gateway.config import GatewaySettings
from mcp_gateway.dashboard.views import calls_filter
from mcp_gateway.governance.approvals import APPROVAL_INPUT, approval_request, approval_state, asking, given_answer
from mcp_gateway.governance.audit import Auditor
from mcp_gateway.governance.identity import OPEN, Identity, current_identity, identity_for
from mcp_gateway.governance.keys import KeyRing
from mcp_gateway.governance.quotas import Quota
from mcp_gateway.governance.rounds import InputNeeded, Round, round_of, serving_round
from mcp_gateway.oauth.claims import identity_of
from mcp_gateway.oauth.grants import owner_of
from mcp_gateway.server import subscribers
from mcp_gateway.server.changes import ListChanges
from mcp_gateway.server.relay import Relay
from mcp_gateway.server.sessions import PER_KEY
from mcp_gateway.server.subscribers import Holder, Subscribers
from mcp_gateway.storage import SQLiteStorage, Storage
from mcp_gateway.storage.base import AuditFilter
from mcp_gateway.storage.migrations import migrations
from tests.helpers import eventually, make_config, stdio, text_of
from tests.stores import BACKENDS, open_store

pytestmark = pytest.mark.anyio

SECRET = "alice-key-0123456789abcdef"
CLAIMS = {"sub": "mallory", "email": "alice", "groups": ["staff"]}
"""A user who chose `alice` as their email at the provider: named exactly like the API key `alice`."""


def config(**sections: Any) -> GatewayConfig:
    return make_config({"math": stdio("math_server")}, groups={"math": {"tools": ["math.*"]}},
                       keys={"alice": {"key": SECRET, "groups": ["math"], **sections.pop("key", {})}},
                       sign_in={"issuer": "https://login.example.com", "resource": "https://gw.example.com/mcp",
                                "groups": {"staff": {"groups": ["math"]}}, **sections.pop("sign_in", {})},
                       **sections)


def user(cfg: GatewayConfig) -> Identity:
    assert cfg.sign_in is not None
    return identity_of(cfg, cfg.sign_in, CLAIMS)


async def key(gw: Gateway) -> Identity:
    found = await gw.keys.authenticate(SECRET)
    assert found is not None
    return found


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """Scripts run one at a time (one worker), and each caller may queue one more."""
    cfg = config(tools={"math.add": {"approval": "always"}},
                 limits={"workers": 1, "max_workers": 1, "max_queued_per_key": 1})
    async with Gateway(cfg) as gw:
        await eventually(lambda: gw.upstream("math").state == "ready")
        yield gw


def test_a_user_named_like_a_key_is_another_principal() -> None:
    cfg = config()
    alice = dataclasses.replace(user(cfg), subject=None)  # what the key `alice` is, as far as names go
    mallory = user(cfg)
    assert mallory.name == alice.name == "alice"
    assert (alice.principal, mallory.principal) == ("key:alice", "user:mallory")
    assert owner_of(alice) == alice.principal and owner_of(mallory) == mallory.principal  # one definition


# ---- the audit log -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_their_audit_rows_differ_and_filter_apart(backend: str, tmp_path: Path) -> None:
    cfg = config()
    async with open_store(backend, tmp_path) as store:
        auditor = Auditor(store, GatewaySettings(audit_arguments=True))
        key_row = auditor.row(await _key_of(cfg, store), kind="tool", server="math", tool="add", arguments={},
                              outcome="ok", started=time.perf_counter())
        user_row = auditor.row(user(cfg), kind="tool", server="math", tool="add", arguments={}, outcome="ok",
                               started=time.perf_counter())
        for row in (key_row, user_row):
            await auditor.record(row)
        stored = await store.query_audit()
        assert [r.key for r in stored] == ["alice", "alice"]  # the name shown stays the name
        assert _who(stored[0]) != _who(stored[1]), "the audit log cannot tell the user from the key"
        assert [r.principal for r in stored] == ["key:alice", "user:mallory"]
        filters, _, where = calls_filter({"principal": "key:alice"})  # the dashboard's calls page
        assert filters == {"principal": "key:alice"} and where == AuditFilter(principal="key:alice", top_level=True)
        mine = await store.audit_page(where)
        assert [e.row.principal for e in mine] == ["key:alice"]
        assert len(await store.audit_page(AuditFilter(key="alice"))) == 2  # the name shown matches both


async def test_rows_written_before_the_principal_was_kept_stay_readable(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied REAL)")
    older = [m for m in migrations("sqlite") if m.name != "audit_principal"]
    for m in older:
        db.executescript(m.sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (m.version, m.name))
    db.execute("INSERT INTO audit (ts, key, endpoint, kind, tool, outcome, latency_ms, arg_bytes, result_bytes) "
               "VALUES (1.0, 'alice', '/mcp', 'tool', 'add', 'ok', 1.0, 0, 0)")
    db.commit()
    db.close()
    store = SQLiteStorage(tmp_path / "gateway.db")
    try:
        assert await store.migrate() == [f"{len(older) + 1:04d}_audit_principal"]
        [old] = await store.query_audit()
        assert (old.key, old.principal) == ("alice", None)  # who it was cannot be told now: not guessed
    finally:
        await store.close()


async def test_the_audit_argument_budget_is_per_principal(tmp_path: Path) -> None:
    cfg = config()
    auditor = Auditor(SQLiteStorage(tmp_path / "gateway.db"),
                      GatewaySettings(audit_arguments=True, audit_key_argument_bytes_per_day=3000))

    def stored(who: Identity) -> str:
        row = auditor.row(who, kind="tool", server="math", tool="add", arguments={"blob": "x" * 900},
                          outcome="ok", started=time.perf_counter())
        assert row.arguments is not None
        return row.arguments

    mallory = user(cfg)
    spent = [stored(mallory) for _ in range(4)]
    assert spent[-1].startswith("[not stored: ")
    alice = dataclasses.replace(mallory, subject=None)
    assert stored(alice).startswith('{"blob": "xxx'), "the user used up the key's audit budget"
    assert spent[-1] == "[not stored: user alice reached audit_key_argument_bytes_per_day]"


# ---- Code Mode ---------------------------------------------------------------------------------


async def test_a_user_cannot_fill_the_keys_script_queue(gateway: Gateway) -> None:
    gw = gateway
    mallory, alice = user(gw.config), await key(gw)
    answers: dict[str, str] = {}

    async def run(who: Identity, tag: str, code: str) -> None:
        with acting_as(who):
            answers[tag] = text_of(await call(gw, "executeToolCode", {"code": code}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, mallory, "running", "result = math.slow(seconds=1.5)")
        await eventually(lambda: gw.sandbox.queue.running == 1)
        tg.start_soon(run, mallory, "queued", "result = 1")
        await eventually(lambda: gw.sandbox.queue.queued == 1)  # the user's share of the queue is full
        await run(alice, "key", "result = 2")
    assert "already has 1 scripts waiting" not in answers["key"], "the user filled the key's queue share"
    assert answers["key"] == "result = 2"


@contextlib.contextmanager
def modern_client(who: Identity, current: Round) -> Iterator[None]:
    """A request of a 2026-07-28 client that can ask its user, as `server.entry.Entry` binds it."""

    async def approver(message: str) -> str:
        known = given_answer(message)
        if known is not None:
            return known
        raise InputNeeded({APPROVAL_INPUT: approval_request(message)}, {APPROVAL_INPUT: approval_state(message)})

    with acting_as(who), asking(approver), serving_round(current):
        yield


async def test_a_key_cannot_continue_a_users_paused_script(gateway: Gateway) -> None:
    gw = gateway
    mallory, alice = user(gw.config), await key(gw)
    code = "result = math.add(a=1, b=2)"
    with modern_client(mallory, Round()), pytest.raises(InputNeeded) as paused:
        await call(gw, "executeToolCode", {"code": code})
    [asked] = paused.value.pending
    retry = {"requestState": paused.value.state, "inputResponses": {asked: {"action": "accept", "content": {}}}}
    with modern_client(alice, round_of(retry)):
        stolen = await call(gw, "executeToolCode", {"code": code})
    assert stolen.is_error and "cannot be continued" in text_of(stolen), "the key continued the user's script"
    with modern_client(mallory, round_of(retry)):
        assert text_of(await call(gw, "executeToolCode", {"code": code})) == "result = 3"


# ---- per-connection trackers and subscriptions -------------------------------------------------


class _Session:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_tool_list_changed(self) -> None:
        self.sent.append("tools")

    async def send_prompt_list_changed(self) -> None:
        self.sent.append("prompts")


def _ctx(session: object, session_id: str) -> Any:
    request = SimpleNamespace(headers={"mcp-session-id": session_id})
    return SimpleNamespace(protocol_version="2025-11-25", request=request, session=session)


async def test_a_user_cannot_evict_the_keys_list_change_trackers() -> None:
    cfg = config()
    mallory = user(cfg)
    alice = dataclasses.replace(mallory, subject=None)
    tools = ["math.add"]
    version: list[object] = [object()]

    def view() -> list[types.Tool]:
        who = current_identity(mallory)
        return [types.Tool(name=t, input_schema={"type": "object"}) for t in tools if who.allows(*t.split("."))]

    changes = ListChanges(view, lambda: mallory, lambda: version[0])
    listed, watching = _Session(), _Session()
    changes.listed("http:alice-1", listed, alice)  # type: ignore[arg-type]
    changes.watch(_ctx(watching, "alice-2"), alice)
    for i in range(PER_KEY):
        changes.listed(f"http:mallory-{i}", _Session(), mallory)  # type: ignore[arg-type]
        changes.watch(_ctx(_Session(), f"mallory-{i}"), mallory)
    tools.append("math.mul")
    version[0] = object()
    await changes.notify()
    await changes.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert listed.sent == ["tools"], "the user's sessions evicted the key's tools/list tracker"
    assert watching.sent == ["prompts"], "the user's sessions evicted the key's list watcher"


async def test_a_user_cannot_evict_the_keys_log_listener() -> None:
    cfg = config()
    mallory = user(cfg)
    alice = dataclasses.replace(mallory, subject=None)
    gw = SimpleNamespace(identity=alice, upstreams=[])
    relay = Relay(gw)  # type: ignore[arg-type]
    await relay.set_level(_ctx(object(), "alice"), types.SetLevelRequestParams(level="info"))
    gw.identity = mallory
    for i in range(PER_KEY):
        await relay.set_level(_ctx(object(), f"mallory-{i}"), types.SetLevelRequestParams(level="info"))
    assert relay.listeners.get("http:alice") is not None, "the user's sessions evicted the key's log listener"


def test_a_user_cannot_use_up_the_keys_subscriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscribers, "MAX_SUBSCRIPTIONS_PER_KEY", 1)
    cfg = config()
    mallory = user(cfg)
    alice = dataclasses.replace(mallory, subject=None)
    table = Subscribers(None, None, lambda server: None)  # type: ignore[arg-type]
    assert table.add("math", "note://a", "http:mallory", Holder(mallory))
    with pytest.raises(MCPError, match="the most one key may hold"):
        table.add("math", "note://b", "http:mallory", Holder(mallory))
    assert table.add("math", "note://b", "http:alice", Holder(alice)), "the user used up the key's subscriptions"
    with pytest.raises(MCPError, match="user alice has 1 resource subscriptions"):
        table.add("math", "note://c", "http:mallory", Holder(mallory))
    with pytest.raises(MCPError, match="key alice has 1 resource subscriptions"):
        table.add("math", "note://c", "http:alice", Holder(alice))


# ---- quotas (per `sub` already: kept so) -------------------------------------------------------


async def test_a_user_cannot_use_up_the_keys_rate_limit(tmp_path: Path) -> None:
    cfg = config(key={"calls_per_minute": 1}, sign_in={"calls_per_minute": 1})
    store = SQLiteStorage(tmp_path / "gateway.db")
    try:
        quota = Quota(cfg, store)
        mallory = user(cfg)
        await quota.check_rate(mallory, "calls")
        with pytest.raises(Exception, match="rate limit: user mallory allows 1 calls"):
            await quota.check_rate(mallory, "calls")
        await quota.check_rate(await _key_of(cfg, store), "calls")  # the key's own minute is untouched
    finally:
        await store.close()


async def _key_of(cfg: GatewayConfig, store: Storage) -> Identity:
    """The key `alice` as the key ring authenticates it."""
    found = await KeyRing(cfg, store).authenticate(SECRET)
    assert found is not None
    return found


def _who(row: Any) -> dict[str, Any]:
    """What a row says of its caller (every field but the call's own)."""
    fields = dataclasses.asdict(row)
    return {k: v for k, v in fields.items() if k not in ("ts", "latency_ms", "tool", "server", "kind", "outcome")}


def test_the_local_caller_of_a_gateway_without_keys_is_no_key() -> None:
    """A key named `local`, created once the gateway has keys, inherits nothing the keyless gateway's caller left."""
    later = identity_for(make_config({}, keys={"local": {"key": "k" * 20}}), "local", None, ["all"], admin=True)
    assert OPEN.principal == "local" and later.principal == "key:local"
    assert dataclasses.replace(later, allow=OPEN.allow, admin=True) != OPEN
