"""Identity: the one allowlist function, the effective allowlist of a key, and the caller in context."""

from __future__ import annotations

import anyio
import pytest

from mcp_gateway import parse_config
from mcp_gateway.governance.identity import NOBODY, OPEN, Identity, acting_as, current_identity, identity_for

ALICE = Identity("alice", team="platform", allow=("github.get_*", "github.list_*", "db.*"), deny=("db.drop_*",))


# ---- allows ------------------------------------------------------------------------------------


def test_allow_patterns_grant_tools() -> None:
    assert ALICE.allows("github", "get_issue")
    assert ALICE.allows("github", "list_repos")
    assert ALICE.allows("db", "query")


def test_deny_by_default() -> None:
    assert not ALICE.allows("github", "create_issue")
    assert not ALICE.allows("search", "web")
    assert not Identity("nobody").allows("github", "get_issue")
    assert not NOBODY.allows("any", "thing")


def test_deny_wins_over_allow() -> None:
    assert not ALICE.allows("db", "drop_table")
    everything_but = Identity("k", allow=("*",), deny=("github.update_*", "search.*"))
    assert everything_but.allows("github", "get_issue")
    assert not everything_but.allows("github", "update_issue")
    assert not everything_but.allows("search", "web")


def test_wildcards_match_the_whole_server_dot_tool_reference() -> None:
    me = Identity("k", allow=("gith?b.get_*", "*.ping"))
    assert me.allows("github", "get_issue")
    assert not me.allows("githuub", "get_issue")  # `?` is exactly one character
    assert me.allows("githab", "get_x")
    assert me.allows("db", "ping") and me.allows("search", "ping")
    assert not me.allows("db", "ping2")
    assert not me.allows("github", "GET_issue")  # case-sensitive
    # a pattern is matched against the whole reference, not a prefix of it
    assert not Identity("k", allow=("db.q",)).allows("db", "query")


def test_a_group_endpoint_narrows_the_allowlist() -> None:
    narrowed = ALICE.at_endpoint("reads", ["github.list_*", "search.*"])
    assert narrowed.allows("github", "list_repos")
    assert not narrowed.allows("github", "get_issue")  # allowed by the key, not by the endpoint
    assert not narrowed.allows("search", "web")  # allowed by the endpoint, not by the key
    assert not narrowed.allows("db", "query")


def test_at_endpoint_keeps_the_key_and_records_the_group() -> None:
    narrowed = ALICE.at_endpoint("reads", ("github.*",))
    assert narrowed == Identity("alice", "platform", ALICE.allow, ALICE.deny, ("github.*",), "reads")
    assert ALICE.endpoint is None and ALICE.group is None  # the original is unchanged


def test_an_empty_group_endpoint_allows_nothing() -> None:
    assert not OPEN.at_endpoint("empty", []).allows("github", "get_issue")


def test_open_allows_everything() -> None:
    assert OPEN.allows("any", "thing")
    assert OPEN.may_see_server("any")


# ---- may_see_server, may_use -------------------------------------------------------------------


def test_may_see_server_uses_the_server_part_of_allow_patterns() -> None:
    assert ALICE.may_see_server("github")
    assert ALICE.may_see_server("db")
    assert not ALICE.may_see_server("search")
    assert Identity("k", allow=("git*.x",)).may_see_server("gitlab")
    assert not Identity("k").may_see_server("github")


def test_may_see_server_is_narrowed_by_the_endpoint() -> None:
    assert not ALICE.at_endpoint("search", ["search.*"]).may_see_server("github")
    assert ALICE.at_endpoint("gh", ["github.*"]).may_see_server("github")


def test_a_deny_of_a_whole_server_hides_it() -> None:
    denied = Identity("k", allow=("*",), deny=("github.*",))
    assert not denied.may_see_server("github")


def test_may_use_an_upstream_with_tools_needs_one_callable_tool() -> None:
    assert ALICE.may_use("github", ["create_issue", "get_issue"])
    assert not ALICE.may_use("github", ["create_issue", "update_issue"])
    assert not ALICE.may_use("db", ["drop_table"])  # the only tool is denied
    assert not ALICE.may_use("search", ["web"])


def test_may_use_an_upstream_without_tools_needs_its_name_in_an_allow_pattern() -> None:
    assert ALICE.may_use("github", [])
    assert not ALICE.may_use("docs", [])
    assert Identity("k", allow=("docs.*",)).may_use("docs", iter(()))


# ---- identity_for ------------------------------------------------------------------------------

CONFIG = parse_config({
    "groups": {
        "read": {"tools": ["github.get_*", "github.list_*"]},
        "write": {"tools": ["github.create_*", "github.get_*"]},
        "data": {"tools": ["db.*"]},
    },
    "teams": {"platform": {"groups": ["read", "write"]}, "empty": {}},
})


def test_identity_for_joins_team_and_key_groups_in_order_without_duplicates() -> None:
    me = identity_for(CONFIG, "k", "platform", ["data", "read"])
    assert me == Identity("k", "platform", ("github.get_*", "github.list_*", "github.create_*", "db.*"))


def test_identity_for_drops_removed_groups_even_when_given_twice() -> None:
    me = identity_for(CONFIG, "k", "platform", ["read", "data"], remove=["read"])
    assert me.allow == ("github.create_*", "github.get_*", "db.*")
    assert not me.allows("github", "list_repos")


def test_identity_for_ignores_unknown_groups_and_teams() -> None:
    me = identity_for(CONFIG, "k", "gone", ["nope", "data"])
    assert me.allow == ("db.*",)
    assert me.team == "gone"
    assert identity_for(CONFIG, "k", None, ["nope"]).allow == ()


def test_identity_for_without_groups_allows_nothing() -> None:
    me = identity_for(CONFIG, "k", "empty", [])
    assert me.allow == () and not me.allows("github", "get_issue")


def test_identity_for_keeps_deny_patterns() -> None:
    me = identity_for(CONFIG, "k", "platform", [], deny=["github.create_*"])
    assert me.deny == ("github.create_*",)
    assert me.allows("github", "get_issue") and not me.allows("github", "create_issue")


# ---- the caller in context ---------------------------------------------------------------------


def test_current_identity_defaults_outside_any_block() -> None:
    assert current_identity(OPEN) is OPEN
    assert current_identity(NOBODY) is NOBODY


def test_acting_as_nests_and_restores() -> None:
    bob = Identity("bob")
    with acting_as(ALICE):
        assert current_identity(NOBODY) is ALICE
        with acting_as(bob):
            assert current_identity(NOBODY) is bob
        assert current_identity(NOBODY) is ALICE
    assert current_identity(NOBODY) is NOBODY


def test_acting_as_restores_after_an_exception() -> None:
    with pytest.raises(RuntimeError), acting_as(ALICE):
        raise RuntimeError("boom")
    assert current_identity(OPEN) is OPEN


@pytest.mark.anyio
async def test_acting_as_reaches_tasks_started_inside_the_block() -> None:
    seen: dict[str, Identity] = {}

    async def record(label: str) -> None:
        await anyio.sleep(0)
        seen[label] = current_identity(NOBODY)

    async with anyio.create_task_group() as tg:
        with acting_as(ALICE):
            tg.start_soon(record, "inside")
        tg.start_soon(record, "after")
    assert seen == {"inside": ALICE, "after": NOBODY}


@pytest.mark.anyio
async def test_a_task_keeps_its_identity_while_the_starter_changes_its_own() -> None:
    bob = Identity("bob")
    seen: list[Identity] = []
    started = anyio.Event()
    proceed = anyio.Event()

    async def worker() -> None:
        started.set()
        await proceed.wait()
        seen.append(current_identity(NOBODY))

    async with anyio.create_task_group() as tg:
        with acting_as(ALICE):
            tg.start_soon(worker)
            await started.wait()
            with acting_as(bob):
                proceed.set()
                await anyio.sleep(0)
    assert seen == [ALICE]


def test_patterns_may_name_a_tool_by_the_identifier_its_stub_shows() -> None:
    denied = Identity("k", allow=("github.*",), deny=("github.delete_repo",))
    assert not denied.allows("github", "delete-repo", "delete_repo")
    assert denied.allows("github", "get-repo", "get_repo")
    allowed = Identity("k", allow=("github.get_repo",))
    assert allowed.allows("github", "get-repo", "get_repo")
    assert not allowed.allows("github", "get-repo")
