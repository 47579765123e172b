"""List changes: who is told that tools, prompts or resources changed, without a gateway."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ServerEvent, ToolsListChanged

from mcp_gateway.governance.identity import NOBODY, Identity, current_identity
from mcp_gateway.server.changes import ListChanges
from mcp_gateway.server.sessions import PER_KEY, PerKey

GITHUB = Identity("gh", allow=("github.*",))
DB = Identity("db", allow=("db.*",))
ALL = Identity("all", allow=("*",))


class Catalog:
    """The tools upstream, a version that changes with them, and the view each caller gets."""

    def __init__(self, *refs: str) -> None:
        self.refs = list(refs)
        self.version = object()
        self.views: list[Identity] = []

    def set(self, *refs: str) -> None:
        self.refs = list(refs)
        self.version = object()

    def view(self) -> list[types.Tool]:
        identity = current_identity(NOBODY)
        self.views.append(identity)
        return [types.Tool(name=ref, input_schema={"type": "object"}) for ref in self.refs
                if identity.allows(*ref.split(".", 1))]


@dataclass
class Session:
    """What `ListChanges` calls on a `ServerSession`."""

    fail: bool = False
    sent: list[str] = field(default_factory=list)

    async def _send(self, what: str) -> None:
        self.sent.append(what)
        if self.fail:
            raise ConnectionError("gone")

    async def send_tool_list_changed(self) -> None:
        await self._send("tools")

    async def send_prompt_list_changed(self) -> None:
        await self._send("prompts")

    async def send_resource_list_changed(self) -> None:
        await self._send("resources")


class Caller:
    """The identity of the request being served, as the server's `identity` callable gives it."""

    def __init__(self) -> None:
        self.now = NOBODY

    def __call__(self) -> Identity:
        return self.now


def make(catalog: Catalog) -> ListChanges:
    return ListChanges(catalog.view, Caller(), lambda: catalog.version)


def ctx(session: Session, session_id: str | None = None, version: str = "2025-11-25") -> Any:
    request = None if session_id is None else SimpleNamespace(headers={"mcp-session-id": session_id})
    return SimpleNamespace(protocol_version=version, request=request, session=session)


# ---- fingerprints ------------------------------------------------------------------------------


def test_the_view_is_computed_once_per_identity_and_catalog_version() -> None:
    catalog = Catalog("github.get", "db.query")
    lc = make(catalog)
    first = lc.fingerprint(GITHUB)
    assert lc.fingerprint(GITHUB) == first
    assert catalog.views == [GITHUB]  # the view ran as that identity, once
    lc.fingerprint(DB)
    assert catalog.views == [GITHUB, DB]
    catalog.set("github.get", "db.query")  # a new version, the same tools
    assert lc.fingerprint(GITHUB) == first
    assert catalog.views == [GITHUB, DB, GITHUB]


def test_fingerprints_differ_with_what_the_caller_sees() -> None:
    catalog = Catalog("github.get", "db.query")
    lc = make(catalog)
    gh, db = lc.fingerprint(GITHUB), lc.fingerprint(DB)
    assert gh != db
    catalog.set("github.get", "db.query", "db.insert")
    assert lc.fingerprint(GITHUB) == gh
    assert lc.fingerprint(DB) != db
    assert lc.fingerprint(NOBODY) == lc.fingerprint(Identity("other"))  # both see nothing


# ---- handshake-era sessions --------------------------------------------------------------------


@pytest.mark.anyio
async def test_notify_tells_only_sessions_whose_view_changed() -> None:
    catalog = Catalog("github.get", "db.query")
    lc = make(catalog)
    gh, db, everyone = Session(), Session(), Session()
    lc.listed("a", gh, GITHUB)
    lc.listed("b", db, DB)
    lc.listed("c", everyone, ALL)
    catalog.set("github.get", "db.query", "db.insert")
    await lc.notify()
    assert (gh.sent, db.sent, everyone.sent) == ([], ["tools"], ["tools"])
    await lc.notify()  # nothing changed since: nobody is told again
    assert (gh.sent, db.sent, everyone.sent) == ([], ["tools"], ["tools"])
    catalog.set("github.get", "github.create", "db.query", "db.insert")
    await lc.notify()
    assert (gh.sent, db.sent, everyone.sent) == (["tools"], ["tools"], ["tools", "tools"])


@pytest.mark.anyio
async def test_a_change_and_its_undo_before_notify_tells_no_one() -> None:
    catalog = Catalog("github.get")
    lc = make(catalog)
    session = Session()
    lc.listed("a", session, GITHUB)
    catalog.set("github.get", "github.create")
    catalog.set("github.get")
    await lc.notify()
    assert session.sent == []


@pytest.mark.anyio
async def test_listing_again_records_what_the_session_was_shown() -> None:
    catalog = Catalog("github.get")
    lc = make(catalog)
    session = Session()
    lc.listed("a", session, GITHUB)
    catalog.set("github.get", "github.create")
    lc.listed("a", session, GITHUB)  # it listed the new tools before the notification went out
    await lc.notify()
    assert session.sent == []


@pytest.mark.anyio
async def test_a_session_whose_send_fails_is_forgotten() -> None:
    catalog = Catalog("db.query")
    lc = make(catalog)
    gone, alive = Session(fail=True), Session()
    lc.listed("gone", gone, DB)
    lc.listed("alive", alive, DB)
    catalog.set("db.query", "db.insert")
    await lc.notify()  # the failure does not stop the others
    catalog.set("db.query")
    await lc.notify()
    assert gone.sent == ["tools"]
    assert alive.sent == ["tools", "tools"]


@pytest.mark.anyio
async def test_at_most_per_key_sessions_of_one_key_are_remembered_most_recent_first() -> None:
    catalog = Catalog("db.query")
    lc = make(catalog)
    sessions = [Session() for _ in range(PER_KEY + 1)]
    for i, s in enumerate(sessions[:-1]):
        lc.listed(f"s{i}", s, DB)
    lc.listed("s0", sessions[0], DB)  # listing again makes it the most recent
    lc.listed("last", sessions[-1], DB)  # so s1 is the one forgotten
    catalog.set("db.query", "db.insert")
    await lc.notify()
    told = [i for i, s in enumerate(sessions) if s.sent == ["tools"]]
    assert len(told) == PER_KEY
    assert 1 not in told and 0 in told and PER_KEY in told
    assert len(catalog.views) == 2  # one identity, two versions: the view ran twice


# ---- subscriptions/listen streams --------------------------------------------------------------


class Stream:
    def __init__(self) -> None:
        self.events: list[ServerEvent] = []

    def __call__(self, event: ServerEvent) -> None:
        self.events.append(event)


def subscribe(caller: Caller, lc: ListChanges, who: Identity) -> tuple[Stream, Callable[[], None]]:
    """Subscribe as `who` (the SDK calls `subscribe` in the listening request's context)."""
    stream = Stream()
    caller.now = who
    unsubscribe = lc.subscribe(stream)
    caller.now = NOBODY  # later requests are someone else's: the stream keeps its own caller
    return stream, unsubscribe


@pytest.mark.anyio
async def test_subscribe_takes_the_callers_identity_and_notify_reaches_its_stream() -> None:
    catalog = Catalog("github.get", "db.query")
    caller = Caller()
    lc = ListChanges(catalog.view, caller, lambda: catalog.version)
    gh, _ = subscribe(caller, lc, GITHUB)
    db, _ = subscribe(caller, lc, DB)
    catalog.set("github.get", "db.query", "db.insert")
    await lc.notify()
    assert gh.events == [] and db.events == [ToolsListChanged()]


@pytest.mark.anyio
async def test_publish_to_delivers_only_to_streams_that_may_see() -> None:
    caller = Caller()
    lc = ListChanges(Catalog().view, caller, object)
    gh, _ = subscribe(caller, lc, GITHUB)
    db, _ = subscribe(caller, lc, DB)
    await lc.publish_to(PromptsListChanged(), lambda who: who.may_see_server("db"))
    assert gh.events == [] and db.events == [PromptsListChanged()]
    await lc.publish(ResourcesListChanged())
    assert gh.events == [ResourcesListChanged()]
    assert db.events == [PromptsListChanged(), ResourcesListChanged()]


@pytest.mark.anyio
async def test_unsubscribe_stops_delivery() -> None:
    catalog, caller = Catalog("db.query"), Caller()
    lc = ListChanges(catalog.view, caller, lambda: catalog.version)
    kept, _ = subscribe(caller, lc, DB)
    dropped, unsubscribe = subscribe(caller, lc, DB)
    unsubscribe()
    unsubscribe()  # twice is harmless
    await lc.publish(PromptsListChanged())
    catalog.set("db.query", "db.insert")
    await lc.notify()
    assert dropped.events == []
    assert kept.events == [PromptsListChanged(), ToolsListChanged()]


# ---- prompt and resource list changes ----------------------------------------------------------


@pytest.mark.anyio
async def test_upstream_list_changed_tells_watchers_and_streams_that_may_see() -> None:
    caller = Caller()
    lc = ListChanges(Catalog().view, caller, object)
    gh, db = Session(), Session()
    lc.watch(ctx(gh, "one"), GITHUB)
    lc.watch(ctx(db, "two"), DB)
    stream_gh, _ = subscribe(caller, lc, GITHUB)
    stream_db, _ = subscribe(caller, lc, DB)
    db_only = lambda who: who.may_see_server("db")  # noqa: E731
    await lc.upstream_list_changed(PromptsListChanged(), db_only)
    await lc.upstream_list_changed(ResourcesListChanged(), db_only)
    assert gh.sent == [] and db.sent == ["prompts", "resources"]
    assert stream_gh.events == []
    assert stream_db.events == [PromptsListChanged(), ResourcesListChanged()]


@pytest.mark.anyio
async def test_watching_again_from_the_same_connection_replaces_it() -> None:
    lc = make(Catalog())
    old, new = Session(), Session()
    lc.watch(ctx(old), DB)  # stdio: one client
    lc.watch(ctx(new), GITHUB)
    await lc.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert old.sent == [] and new.sent == ["prompts"]


@pytest.mark.anyio
async def test_clients_of_the_listen_era_are_not_watched() -> None:
    lc = make(Catalog())
    session = Session()
    lc.watch(ctx(session, "one", version="2026-07-28"), DB)
    await lc.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert session.sent == []


@pytest.mark.anyio
async def test_a_watcher_whose_send_fails_is_forgotten() -> None:
    lc = make(Catalog())
    gone, alive = Session(fail=True), Session()
    lc.watch(ctx(gone, "gone"), DB)
    lc.watch(ctx(alive, "alive"), DB)
    await lc.upstream_list_changed(ResourcesListChanged(), lambda who: True)
    await lc.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert gone.sent == ["resources"]
    assert alive.sent == ["resources", "prompts"]


@pytest.mark.anyio
async def test_at_most_per_key_list_watchers_of_one_key_are_remembered() -> None:
    lc = make(Catalog())
    sessions = [Session() for _ in range(PER_KEY + 1)]
    for i, s in enumerate(sessions):
        lc.watch(ctx(s, f"s{i}"), DB)
    await lc.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert sessions[0].sent == []
    assert all(s.sent == ["prompts"] for s in sessions[1:])


@pytest.mark.anyio
async def test_one_key_cannot_push_another_keys_connections_out() -> None:
    lc = make(Catalog())
    other = Session()
    lc.watch(ctx(other, "theirs"), Identity("other", allow=("*",)))
    for i in range(PER_KEY * 5):
        lc.watch(ctx(Session(), f"mine{i}"), DB)
    await lc.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert other.sent == ["prompts"]


@pytest.mark.anyio
async def test_a_connection_that_ended_is_forgotten() -> None:
    lc = make(Catalog())
    gone = Session()
    lc.watch(ctx(gone, "abc"), DB)
    lc.forget("http:abc")
    await lc.upstream_list_changed(PromptsListChanged(), lambda who: True)
    assert gone.sent == []


def test_per_key_keeps_each_keys_newest_and_a_total() -> None:
    table: PerKey[int] = PerKey(per_key=2, total=5)
    for i in range(4):
        table.put(f"a{i}", "a", i)
    table.put("b0", "b", 10)
    assert table.items() == [("a2", 2), ("a3", 3), ("b0", 10)]
    for i in range(4):
        table.put(f"c{i}", f"c{i}", 20 + i)
    assert len(table) == 5 and table.get("a2") is None and table.get("c3") == 23
