"""Meta-tool annotations: the three discovery tools are read-only; executeToolCode's hints are each caller's,
derived from the code-mode tools its scripts can reach (clients such as Codex prompt on anything not harmless)."""

from __future__ import annotations

import sys
from pathlib import Path

import mcp_types as types
import pytest

from mcp_gateway import Gateway, Identity, acting_as, list_tools
from mcp_gateway.codemode import META_TOOLS
from mcp_gateway.codemode.metatools import READ_ONLY, UNKNOWN_EFFECTS, script_annotations
from mcp_gateway.server.changes import ListChanges
from mcp_gateway.tokens import tool_definition_tokens
from tests.helpers import key_client, make_config, serve_gateway, stdio

pytestmark = pytest.mark.anyio

H = types.ToolAnnotations
TIME = str(Path(sys.executable).with_name("mcp-server-time"))  # its tools are annotated read-only, closed-world
KEYS = {"reader": "reader-key-0123456789", "writer": "writer-key-0123456789", "waiting": "wait-key-0123456789ab",
        "direct": "direct-key-0123456789"}


def tool(name: str, hints: types.ToolAnnotations | None) -> types.Tool:
    return types.Tool(name=name, input_schema={"type": "object"}, annotations=hints)


def test_discovery_tools_are_read_only_and_closed_world() -> None:
    hints = {t.name: t.annotations for t in META_TOOLS}
    assert hints["listToolFiles"] == hints["readToolFile"] == hints["getToolDocs"] == H(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
    assert hints["executeToolCode"] == UNKNOWN_EFFECTS  # the constant; callers get theirs from `list_tools`


def test_annotations_cost_claude_no_tokens() -> None:
    bare = [t.model_copy(update={"annotations": None}) for t in META_TOOLS]
    assert tool_definition_tokens(META_TOOLS, "mcp__gw__") == tool_definition_tokens(bare, "mcp__gw__")


@pytest.mark.parametrize(("reachable", "expected"), [
    ([], READ_ONLY),
    ([tool("a", READ_ONLY), tool("b", H(read_only_hint=True, open_world_hint=False))], READ_ONLY),
    # a read-only tool's destructiveHint means nothing; its missing openWorldHint is the default (open)
    ([tool("a", H(read_only_hint=True, destructive_hint=True, open_world_hint=False))], READ_ONLY),
    ([tool("a", READ_ONLY), tool("fetch", H(read_only_hint=True))],
     H(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)),
    # unannotated: the MCP defaults (destructive, open-world)
    ([tool("a", READ_ONLY), tool("b", None)], UNKNOWN_EFFECTS),
    ([tool("a", READ_ONLY), tool("b", H(title="B"))], UNKNOWN_EFFECTS),
    # writes, but none destructive and all closed-world: a prompt-worthy script still, but not destructive
    ([tool("a", READ_ONLY), tool("put", H(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False))],
     H(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)),
    ([tool("put", H(destructive_hint=False, open_world_hint=False)), tool("rm", H(open_world_hint=False))],
     H(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)),
    ([tool("put", H(destructive_hint=False, open_world_hint=False)), tool("get", H(read_only_hint=True))],
     H(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)),
])  # fmt: skip
def test_execute_tool_code_hints_follow_the_reachable_tools(
    reachable: list[types.Tool], expected: types.ToolAnnotations
) -> None:
    assert script_annotations(reachable) == expected
    assert script_annotations(list(reversed(reachable))) == expected  # order does not matter


def test_unknown_tools_give_the_defaults() -> None:
    assert script_annotations([tool("a", READ_ONLY)], complete=False) == UNKNOWN_EFFECTS


def _config() -> object:
    """time (read-only tools), math (unannotated tools), a server that never starts, time again in direct mode."""
    return make_config(
        {"time": {"command": TIME, "args": ["--local-timezone", "UTC"]}, "math": stdio("math_server"),
         "gone": {"command": "/nonexistent/mcp-server"},
         "clock": {"command": TIME, "args": ["--local-timezone", "UTC"], "mode": "direct"}},
        groups={"time": {"tools": ["time.*"]}, "math": {"tools": ["math.*"]}, "gone": {"tools": ["gone.*"]},
                "clock": {"tools": ["clock.*"]}},
        keys={name: {"key": KEYS[name], "groups": groups} for name, groups in (
            ("reader", ["time", "clock"]), ("writer", ["time", "math"]),
            ("waiting", ["time", "gone", "clock"]), ("direct", ["clock"]))},
        gateway={"reconnect_initial_s": 60, "health_interval_s": 0},
    )  # fmt: skip


def _execute(tools: list[types.Tool]) -> types.ToolAnnotations | None:
    [execute] = [t for t in tools if t.name == "executeToolCode"]
    return execute.annotations


async def test_each_caller_gets_the_hints_of_what_its_scripts_reach() -> None:
    gw = Gateway(_config())  # type: ignore[arg-type]
    async with gw:
        seen: dict[str, list[types.Tool]] = {}
        for name, key in KEYS.items():
            who = await gw.keys.authenticate(key)
            assert who is not None
            identity: Identity = who
            with acting_as(identity):
                seen[name] = list_tools(gw)
                assert list_tools(gw) == seen[name]  # deterministic: the list_changed digest compares these
            digests = {ListChanges(lambda: list_tools(gw), lambda: gw.identity, lambda: gw.full_catalog)
                       .fingerprint(identity) for _ in range(2)}
            assert len(digests) == 1
    assert _execute(seen["reader"]) == READ_ONLY  # time's tools only; clock is direct mode, not reachable by scripts
    assert _execute(seen["writer"]) == UNKNOWN_EFFECTS  # math's tools carry no annotations
    assert _execute(seen["waiting"]) == UNKNOWN_EFFECTS  # `gone` is not connected: its tools are unknown
    assert _execute(seen["direct"]) == READ_ONLY  # no code-mode tool at all
    direct = {t.name: t.annotations for t in seen["reader"] if t.name.startswith("clock")}
    assert direct and all(h is not None and h.read_only_hint and h.open_world_hint is False for h in direct.values())
    for tools in seen.values():
        assert {t.name: t.annotations for t in tools if t.name != "executeToolCode" and t.name in
                {m.name for m in META_TOOLS}} == dict.fromkeys(("listToolFiles", "readToolFile", "getToolDocs"),
                                                               READ_ONLY)


async def test_a_client_receives_the_hints_on_the_wire() -> None:
    async with serve_gateway(Gateway(_config())) as url:  # type: ignore[arg-type]
        async with key_client(url, KEYS["reader"]) as reader:
            read_only = _execute((await reader.list_tools()).tools)
        async with key_client(url, KEYS["writer"]) as writer:
            writes = _execute((await writer.list_tools()).tools)
    assert read_only == READ_ONLY and writes == UNKNOWN_EFFECTS
