"""Claude Code 2.1.330 (the pinned npm package) and the gateway's approvals, offline.

Claude Code runs against a scripted model (`ScriptedClaude`: a small Anthropic Messages API on
127.0.0.1 whose first turn calls `mcp__gw__math_add` with a=2, b=3 and whose next turn ends), with the
gateway added by `claude mcp add --transport http gw URL` and `math.add` configured `approval =
"always"`. Claude Code speaks 2026-07-28 (`server/discover`, declaring form and URL elicitation), so
the gateway answers the call with an input-required result carrying the approval question.

What Claude Code does with it:
- `claude -p` (print mode) has no one to ask: unless an `Elicitation` hook answers, it retries the
  call at once with the answer `cancel`, and the model gets the gateway's refusal as the tool result.
  `--allowedTools` (Claude Code's own permission) makes no difference: the question is the gateway's.
- An `Elicitation` hook (settings `hooks.Elicitation`, matcher = the MCP server's name) that prints
  `{"hookSpecificOutput": {"hookEventName": "Elicitation", "action": "accept", "content": {}}}`
  approves in print mode: the retry carries `accept` and the call runs.
- With `--input-format stream-json` (how the Agent SDK drives it) the question goes to the host as a
  `control_request` of subtype `elicitation`, and the host's answer is the one sent.
- Interactively (not tested here: a terminal UI) Claude Code shows "MCP server "gw" requests your
  input" with the question and Accept / Decline (Esc cancels); Accept makes the retried call succeed.

MCP tools are deferred behind Claude Code's tool search by default; `ENABLE_TOOL_SEARCH=false` offers
them to the model directly, so the scripted model can call one on its first turn.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from mcp_gateway import Gateway
from mcp_gateway.server import build_app
from tests.helpers import make_config, serve_asgi, stdio
from tests.interop.claude_code import Recorder, ScriptedClaude, claude_code_bin

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

TOOL = "mcp__gw__math_add"
QUESTION = "Allow the tool call math.add?\n  a = 2\n  b = 3"
APPROVAL = "mcp-gateway/approval"
CANCELLED = ("math.add needs the user's approval, and it was not given: the question was cancelled (a client "
             "running unattended, such as `claude -p`, cancels every question without asking anyone). Do not "
             "retry the call; tell the user it needs their approval")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def claude() -> Path:
    return claude_code_bin()


class Setup:
    """A gateway whose `math.add` needs approval (its traffic recorded), a scripted model, a fresh HOME."""

    def __init__(self, claude: Path, tmp: Path) -> None:
        self.claude = claude
        self.gw = Gateway(make_config({"math": stdio("math_server", mode="direct")},
                                      tools={"math.add": {"approval": "always"}}))
        self.traffic = Recorder(build_app(self.gw))
        self.model = ScriptedClaude(TOOL, {"a": 2, "b": 3}, "done")
        self.home, self.work = tmp / "home", tmp / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.env: dict[str, str] = {}

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Setup]:
        async with serve_asgi(self.traffic) as gateway, self.model.serving() as api:
            self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "ANTHROPIC_BASE_URL": api,
                        "ANTHROPIC_API_KEY": "fake", "ENABLE_TOOL_SEARCH": "false", "DISABLE_TELEMETRY": "1",
                        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
            added = await self.run(["mcp", "add", "--transport", "http", "gw", f"{gateway}/mcp"])
            assert "Added HTTP MCP server gw" in added, added
            yield self

    async def run(self, args: list[str]) -> str:
        """`claude *args` in the work directory; its stdout (it must exit 0)."""
        with anyio.fail_after(120):
            done = await anyio.run_process([str(self.claude), *args], env=self.env, cwd=str(self.work), check=False)
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"claude {args[:2]} exited {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"
        return out

    async def print_mode(self, *extra: str) -> list[dict[str, Any]]:
        """`claude -p "add 2 and 3"` with Claude Code's own permission for the tool; its stream-json events."""
        out = await self.run(["-p", "add 2 and 3", "--allowedTools", TOOL, "--output-format", "stream-json",
                              "--verbose", *extra])
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def calls(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Each `tools/call` the gateway received (params without `_meta`) with its JSON-RPC response."""
        found = []
        for request, reply in self.traffic.responses_to("tools/call"):
            params = {k: v for k, v in request["params"].items() if k != "_meta"}
            found.append((params, reply))
        return found

    async def audit(self) -> list[tuple[str, str, str | None, str | None]]:
        return [(r.tool, r.outcome, r.approval, r.error) for r in await self.gw.storage.query_audit()
                if r.kind == "tool"]


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    return content if isinstance(content, str) else "\n".join(str(p.get("text", "")) for p in content or [])


async def test_claude_code_speaks_2026_07_28_and_print_mode_cancels_the_approval(
    claude: Path, tmp_path: Path
) -> None:
    async with Setup(claude, tmp_path).serving() as s:
        events = await s.print_mode()
        audit = await s.audit()

    # the 2026-07-28 era: no initialize; server/discover first, declaring form and URL elicitation
    first, *_ = s.traffic.exchanges
    meta = first[0]["params"]["_meta"]
    assert first[0]["method"] == "server/discover", s.traffic.methods()
    assert "initialize" not in s.traffic.methods()
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert meta["io.modelcontextprotocol/clientInfo"]["version"] == "2.1.330"
    assert meta["io.modelcontextprotocol/clientCapabilities"]["elicitation"] == {"form": {}, "url": {}}

    # the call, answered with the question; at once the retry, answering cancel to the same state
    [(call, asked), (retry, refused)] = s.calls()
    assert call == {"name": "math_add", "arguments": {"a": 2, "b": 3}}
    question = asked["result"]
    assert question["resultType"] == "input_required"
    assert question["inputRequests"][APPROVAL]["params"]["message"] == QUESTION
    assert retry == {**call, "inputResponses": {APPROVAL: {"action": "cancel"}},
                     "requestState": question["requestState"]}
    assert refused["result"]["isError"] is True
    assert refused["result"]["content"] == [{"type": "text", "text": CANCELLED}]

    # the model gets the refusal as it is, as an error result, and the run ends normally
    [result] = s.model.tool_results()
    assert result["is_error"] is True and _tool_result_text(result) == CANCELLED
    assert len(s.model.main_requests) == 2
    [end] = [e for e in events if e.get("type") == "result"]
    assert (end["subtype"], end["is_error"], end["result"], end["permission_denials"]) == ("success", False, "done", [])

    assert audit == [("add", "input_required", None, None), ("add", "ApprovalRefused", "cancel", CANCELLED)]


HOOK = """import json, sys
with open(sys.argv[1], "w") as seen:
    seen.write(sys.stdin.read())
print(json.dumps({"hookSpecificOutput": {"hookEventName": "Elicitation", "action": "accept", "content": {}}}))
"""


async def test_an_elicitation_hook_approves_in_print_mode(claude: Path, tmp_path: Path) -> None:
    setup = Setup(claude, tmp_path)
    hook, seen = tmp_path / "approve.py", tmp_path / "hook-input.json"
    hook.write_text(HOOK)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(hook))} {shlex.quote(str(seen))}"
    (setup.home / ".claude").mkdir()
    (setup.home / ".claude" / "settings.json").write_text(json.dumps(
        {"hooks": {"Elicitation": [{"matcher": "gw", "hooks": [{"type": "command", "command": command}]}]}}))
    async with setup.serving() as s:
        await s.print_mode()
        audit = await s.audit()

    told = json.loads(seen.read_text())
    assert (told["hook_event_name"], told["mcp_server_name"], told["message"], told["mode"]) == (
        "Elicitation", "gw", QUESTION, "form")
    [(_, asked), (retry, answered)] = s.calls()
    assert asked["result"]["resultType"] == "input_required"
    assert retry["inputResponses"] == {APPROVAL: {"action": "accept", "content": {}}}
    assert answered["result"]["structuredContent"] == {"result": 5}
    [result] = s.model.tool_results()
    assert not result.get("is_error") and json.loads(_tool_result_text(result)) == {"result": 5}
    assert audit == [("add", "input_required", None, None), ("add", "ok", "accept", None)]


async def test_a_stream_json_host_is_asked_and_its_answer_is_sent(claude: Path, tmp_path: Path) -> None:
    """`--input-format stream-json` (the Agent SDK's way): the question is a `control_request` to the host."""
    asked: list[dict[str, Any]] = []
    async with Setup(claude, tmp_path).serving() as s:
        args = [str(claude), "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
                "--allowedTools", TOOL]
        with anyio.fail_after(120):
            async with await anyio.open_process(args, env=s.env, cwd=str(s.work)) as proc:
                assert proc.stdin is not None and proc.stdout is not None

                async def send(message: dict[str, Any]) -> None:
                    assert proc.stdin is not None
                    await proc.stdin.send((json.dumps(message) + "\n").encode())

                await send({"type": "user", "message": {"role": "user", "content": "add 2 and 3"},
                            "parent_tool_use_id": None, "session_id": ""})
                lines = BufferedByteReceiveStream(proc.stdout)
                while True:
                    event = json.loads(await lines.receive_until(b"\n", 10_000_000))
                    request = event.get("request", {})
                    if event["type"] == "control_request" and request.get("subtype") == "elicitation":
                        asked.append(request)
                        await send({"type": "control_response", "response": {
                            "subtype": "success", "request_id": event["request_id"],
                            "response": {"action": "accept", "content": {}}}})
                    if event["type"] == "result":
                        break
                await proc.stdin.aclose()
        audit = await s.audit()

    [request] = asked
    assert (request["mcp_server_name"], request["message"], request["mode"]) == ("gw", QUESTION, "form")
    [result] = s.model.tool_results()
    assert json.loads(_tool_result_text(result)) == {"result": 5}
    assert audit == [("add", "input_required", None, None), ("add", "ok", "accept", None)]
