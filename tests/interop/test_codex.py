"""Codex CLI (`codex exec`, the pinned npm package) uses Code Mode through the gateway, unattended.

Codex runs offline against a scripted model: a small Responses API endpoint on 127.0.0.1 whose first
turn calls `executeToolCode` and whose second records the tool's output and ends the turn. `codex exec`
never asks for approval, so a call Codex would prompt for fails: a caller whose scripts reach only
read-only tools runs, one that can reach an unannotated (so destructive, open-world) tool is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers import serve_asgi, shared_gateway, stdio
from tests.interop.npm import CODEX, npm_bin, unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

READER, WRITER = "reader-key-0123456789", "writer-key-0123456789"
TIME = str(Path(sys.executable).with_name("mcp-server-time"))  # its tools are annotated read-only
SCRIPT = 'r = time.convert_time(source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo")\n' \
         'result = r["target"]["datetime"][11:16]'
REFUSED = "MCP tool call requires approval, but approval policy is never"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def codex() -> Path:
    """The pinned Codex; it is a native binary behind a JS launcher (any Node npm runs will do)."""
    exe = npm_bin(CODEX)
    try:
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:  # e.g. no binary for this platform
        unavailable(f"{CODEX[0]}@{CODEX[1]} does not run here: {exc}")
    assert CODEX[1] in version.stdout, version.stdout
    return exe


# reader's scripts reach time's tools (read-only); writer's reach math's too (no annotations)
gateway_url = shared_gateway(
    {"time": {"command": TIME, "args": ["--local-timezone", "UTC"]}, "math": stdio("math_server")},
    groups={"time": {"tools": ["time.*"]}, "math": {"tools": ["math.*"]}},
    keys={"reader": {"key": READER, "groups": ["time"]}, "writer": {"key": WRITER, "groups": ["time", "math"]}},
)


class ScriptedModel:
    """`POST /v1/responses`: call `executeToolCode` with `code` first; once a tool output comes back, finish."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/responses", self.respond, methods=["POST"])])

    async def respond(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        turn = len(self.requests)
        item: dict[str, Any]
        if turn == 1:
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "namespace": "mcp__gw",
                    "name": "executeToolCode", "arguments": json.dumps({"code": self.code})}
        else:
            item = {"type": "message", "role": "assistant", "id": f"msg_{turn}",
                    "content": [{"type": "output_text", "text": "done"}]}
        usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
        events = [{"type": "response.created", "response": {"id": f"resp_{turn}"}},
                  {"type": "response.output_item.done", "item": item},
                  {"type": "response.completed", "response": {"id": f"resp_{turn}", "usage": usage}}]
        sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return Response(sse, media_type="text/event-stream")

    def tool_output(self, call_id: str = "call_1") -> str:
        """The text of the `function_call_output` Codex sent back for `call_id`."""
        for body in self.requests[1:]:
            for item in body.get("input", []):
                if item.get("type") == "function_call_output" and item.get("call_id") == call_id:
                    out = item.get("output")
                    return out if isinstance(out, str) else "\n".join(str(p.get("text", "")) for p in out or [])
        raise AssertionError(f"no function_call_output for {call_id} in {len(self.requests)} requests")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yield the base URL (`.../v1`)."""
        async with serve_asgi(self.app) as base:
            yield f"{base}/v1"


async def run_codex(codex: Path, gateway: str, key: str, model: ScriptedModel, home: Path) -> list[dict[str, Any]]:
    """`codex exec` with a fresh CODEX_HOME pointing at `model` and the gateway; its `--json` events."""
    async with model.serving() as base_url:
        (home / ".codex").mkdir(parents=True)
        (home / ".codex" / "config.toml").write_text(
            'model = "scripted"\nmodel_provider = "fake"\ncheck_for_update_on_startup = false\n'
            f'[model_providers.fake]\nname = "fake"\nbase_url = "{base_url}"\nwire_api = "responses"\n'
            'env_key = "FAKE_OPENAI_KEY"\n'
            f'[mcp_servers.gw]\nurl = "{gateway}"\nhttp_headers = {{ Authorization = "Bearer {key}" }}\n'
        )
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
               "FAKE_OPENAI_KEY": "unused"}
        with anyio.fail_after(120):
            done = await anyio.run_process(
                [str(codex), "exec", "--skip-git-repo-check", "--json", "What time is noon UTC in Tokyo?"],
                env=env, cwd=str(home), check=False)
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"codex exited {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _mcp_call(events: list[dict[str, Any]]) -> dict[str, Any]:
    [call] = [e["item"] for e in events if e.get("type") == "item.completed" and
              e["item"].get("type") == "mcp_tool_call"]
    return dict(call)


async def test_codex_runs_a_read_only_callers_script_unattended(
    codex: Path, gateway_url: str, tmp_path: Path
) -> None:
    model = ScriptedModel(SCRIPT)
    events = await run_codex(codex, gateway_url, READER, model, tmp_path)
    [gateway_tools] = [t for t in model.requests[0]["tools"] if t.get("name") == "mcp__gw"]
    assert {t["name"] for t in gateway_tools["tools"]} == {
        "listToolFiles", "readToolFile", "getToolDocs", "executeToolCode"}
    call = _mcp_call(events)
    assert (call["server"], call["tool"], call["status"]) == ("gw", "executeToolCode", "completed"), call
    assert 'result = "21:00"' in model.tool_output()  # the script's output reached the model
    assert len(model.requests) == 2


async def test_codex_refuses_a_script_that_may_reach_an_unannotated_tool(
    codex: Path, gateway_url: str, tmp_path: Path
) -> None:
    model = ScriptedModel(SCRIPT)
    events = await run_codex(codex, gateway_url, WRITER, model, tmp_path)
    call = _mcp_call(events)
    assert call["status"] == "failed" and REFUSED in json.dumps(call["error"]), call
    assert REFUSED in model.tool_output() and "21:00" not in model.tool_output()
