"""Approvals: which calls need the user's consent, and asking through the bound approver."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import mcp_types as types
import pytest

from mcp_gateway import GatewayConfig, parse_config
from mcp_gateway.errors import ApprovalRefused
from mcp_gateway.governance.approvals import MAX_SHOWN, approve, asking, needs_approval


def config(tools: dict[str, Any] | None = None, **gateway: Any) -> GatewayConfig:
    return parse_config({"tools": tools or {}, "gateway": gateway})


def tool(name: str, **hints: Any) -> types.Tool:
    annotations = types.ToolAnnotations(**hints) if hints else None
    return types.Tool(name=name, input_schema={"type": "object"}, annotations=annotations)


# ---- needs_approval ----------------------------------------------------------------------------


def test_nothing_needs_approval_by_default() -> None:
    assert not needs_approval(config(), "github", tool("update_issue"))
    assert not needs_approval(config(), "github", tool("delete_repo", destructive_hint=True))


def test_always_rules_match_server_dot_tool_patterns() -> None:
    cfg = config({"github.update_*": {"approval": "always"}})
    assert needs_approval(cfg, "github", tool("update_issue"))
    assert not needs_approval(cfg, "github", tool("get_issue"))
    assert not needs_approval(cfg, "gitlab", tool("update_issue"))


def test_always_among_matching_rules_wins_whatever_their_order_or_specificity() -> None:
    """The safer rule wins: a broad "never" cannot switch off a narrow "always" (nor the reverse)."""
    broad_never = config({"github.*": {"approval": "never"}, "github.update_*": {"approval": "always"}})
    narrow_never = config({"github.*": {"approval": "always"}, "github.update_issue": {"approval": "never"}})
    assert needs_approval(broad_never, "github", tool("update_issue"))
    assert not needs_approval(broad_never, "github", tool("get_issue"))
    assert needs_approval(narrow_never, "github", tool("update_issue"))
    assert needs_approval(narrow_never, "github", tool("update_pr"))


def test_rules_match_the_identifier_the_stubs_show() -> None:
    cfg = config({"github.delete_repo": {"approval": "always"}})
    assert needs_approval(cfg, "github", tool("delete-repo"), "delete_repo")
    assert not needs_approval(cfg, "github", tool("delete-repo"))


def test_destructive_tools_need_approval_when_approve_destructive_is_on() -> None:
    cfg = config(approve_destructive=True)
    assert needs_approval(cfg, "fs", tool("delete", destructive_hint=True))
    assert not needs_approval(cfg, "fs", tool("delete", destructive_hint=True, read_only_hint=True))
    assert not needs_approval(cfg, "fs", tool("read", read_only_hint=True))
    assert not needs_approval(cfg, "fs", tool("write", destructive_hint=False))
    assert not needs_approval(cfg, "fs", tool("plain"))  # no annotations at all


def test_a_rule_overrides_the_annotations() -> None:
    cfg = config({"fs.delete": {"approval": "never"}, "fs.read": {"approval": "always"}}, approve_destructive=True)
    assert not needs_approval(cfg, "fs", tool("delete", destructive_hint=True))
    assert needs_approval(cfg, "fs", tool("read", read_only_hint=True))


def test_a_price_only_rule_leaves_the_decision_to_the_annotations() -> None:
    cfg = config({"fs.*": {"price": 1.0}}, approve_destructive=True)
    assert needs_approval(cfg, "fs", tool("delete", destructive_hint=True))
    assert not needs_approval(cfg, "fs", tool("read"))


# ---- approve -----------------------------------------------------------------------------------


class Approver:
    def __init__(self, decision: str) -> None:
        self.decision = decision
        self.asked: list[str] = []

    async def __call__(self, message: str) -> str:
        self.asked.append(message)
        return self.decision


@pytest.mark.anyio
async def test_an_accepted_call_returns_the_decision() -> None:
    approver = Approver("accept")
    with asking(approver):
        assert await approve("github.update_issue", {"id": 7, "title": "née"}) == "accept"
    assert approver.asked == ['Allow the tool call github.update_issue?\n  id = 7\n  title = "née"']


@pytest.mark.anyio
@pytest.mark.parametrize(("decision", "said"), [
    ("decline", "the user answered decline"),
    ("cancel", "it was not given: the question was cancelled (a client running unattended, such as `claude -p`, "
               "cancels every question without asking anyone). Do not retry the call; tell the user it needs "
               "their approval"),
])
async def test_a_refused_call_raises_with_the_answer(decision: str, said: str) -> None:
    with asking(Approver(decision)), pytest.raises(ApprovalRefused) as info:
        await approve("github.update_issue", {})
    assert str(info.value) == f"github.update_issue needs the user's approval, and {said}"


@pytest.mark.anyio
async def test_a_client_that_cannot_ask_is_refused() -> None:
    approver = Approver("unsupported")
    with asking(approver), pytest.raises(ApprovalRefused) as info:
        await approve("fs.delete", {"path": "/"})
    assert str(info.value) == "fs.delete needs the user's approval, and this client cannot ask (no elicitation)"
    assert len(approver.asked) == 1


@pytest.mark.anyio
async def test_without_an_approver_the_call_is_refused() -> None:
    with pytest.raises(ApprovalRefused, match=r"^fs.delete needs the user's approval, and this client cannot ask"):
        await approve("fs.delete", {"path": "/"})


@pytest.mark.anyio
async def test_the_approver_is_unbound_after_the_block_and_nests() -> None:
    outer, inner = Approver("accept"), Approver("decline")
    with asking(outer):
        with asking(inner), pytest.raises(ApprovalRefused):
            await approve("a.b", {})
        assert await approve("a.b", {}) == "accept"
    with pytest.raises(ApprovalRefused, match="cannot ask"):
        await approve("a.b", {})
    assert len(outer.asked) == 1 and len(inner.asked) == 1


@pytest.mark.anyio
async def test_arguments_too_long_to_show_in_full_are_refused_without_asking() -> None:
    approver = Approver("accept")
    with asking(approver), pytest.raises(ApprovalRefused, match=r"too long to show in full \(\d+ characters; at most"):
        await approve("notes.write", {"text": "cleanup of /tmp/scratch " + " " * MAX_SHOWN + "/srv/production-db"})
    assert approver.asked == []


@pytest.mark.anyio
async def test_arguments_of_exactly_max_shown_are_shown_whole() -> None:
    approver = Approver("accept")
    arguments = {"t": "x" * (MAX_SHOWN - len('  t = ""'))}
    with asking(approver):
        await approve("notes.write", arguments)
    assert approver.asked == [f'Allow the tool call notes.write?\n  t = "{arguments["t"]}"']


@pytest.mark.anyio
async def test_bidi_and_invisible_characters_are_made_visible() -> None:
    approver = Approver("accept")
    with asking(approver):
        await approve("fs.delete", {"path": "/tmp/\u202escratch\u200b", "note": "a\u2028b"})
    [message] = approver.asked
    assert "\\u{202E}" in message and "\\u{200B}" in message and "\\u{2028}" in message
    assert "\u202e" not in message and "\u200b" not in message and "\u2028" not in message


@pytest.mark.anyio
async def test_arguments_that_are_not_json_are_shown_as_text() -> None:
    approver = Approver("accept")
    with asking(approver):
        await approve("a.b", {"when": datetime(2024, 5, 1, 12, 30), "ids": {7}})
    assert approver.asked == ['Allow the tool call a.b?\n  when = "2024-05-01 12:30:00"\n  ids = "{7}"']
