"""Running one `executeToolCode` script: its tool calls, progress, and what goes back to the client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types

from sandbox import ExecutionResult, ToolError

from ..calls import NotFound, call_tool
from ..errors import GatewayError, UpstreamUnavailable
from ..gateway import Gateway
from ..governance.rounds import InputNeeded, current_round
from ..results import error_text, mib, result_bytes, result_to_value, text_result, wire_form
from ..storage import StorageUnavailable
from .journal import MAX_JOURNAL_BYTES, PREFIX, Journal, digest
from .journal import load as journal_load
from .journal import save as journal_save

MAX_RETURNED_BLOCKS = 64
"""Binary blocks (images, audio, resources) one script result may carry back to the client."""

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
"""Reports progress of the client's request (a no-op when the client asked for none)."""


class ScriptRun:
    """One execution: the tool caller handed to the sandbox, bound to this run's progress and blocks.

    Binary content (images, audio, resources) never enters the script: it gets a descriptor
    with a `ref`, and the block itself is kept here so that a returned descriptor can be
    sent back to the client as the real content block.
    """

    def __init__(self, gw: Gateway, progress: Progress | None = None, journal: Journal | None = None) -> None:
        self.gw = gw
        self.progress = progress
        self.journal = journal or Journal("")
        self.recording = current_round() is not None
        """Only a 2026-07-28 client's script can pause, so only its calls are recorded (bounded)."""
        self.recorded = 0
        self.calls = 0
        self.blocks: dict[str, types.ContentBlock] = {}
        self.paused: InputNeeded | None = None
        self.scope = anyio.CancelScope()
        """Cancelled when the run pauses for the user's input."""

    async def call(self, ref: str, arguments: Mapping[str, Any]) -> Any:
        """`server.tool` by identifier (or upstream name) -> the result as a script value."""
        server, _, tool = ref.partition(".")
        catalog = self.gw.catalog
        entry = catalog.resolve_ref(server, tool)
        status = next((s.status for s in catalog.code_servers if s.name == server), "ok")  # the caller's view
        comes_back = "enable it in the config" if status == "disabled" else "its tools come back when it reconnects"
        down = UpstreamUnavailable(server, status, comes_back) if status != "ok" else None
        target = entry or NotFound(ref, catalog.code_refs(), down)
        args = entry.upstream_arguments(arguments) if entry else dict(arguments)
        key = self.journal.key(ref, args)
        recorded = self.journal.calls.get(key)
        try:
            if recorded is not None:  # made in an earlier round of this script: not made again
                if "error" in recorded:
                    raise ToolError(recorded["error"])
                result = types.CallToolResult.model_validate(recorded["result"])
            else:
                result = await call_tool(self.gw, target, args, via="script")
                self._record(key, result_bytes(result), lambda: {"result": wire_form(result)})
        except InputNeeded as need:  # the user must answer first: this round ends, the client retries
            self.paused = need
            self.scope.cancel()
            raise ToolError("paused for the user's answer") from None
        except GatewayError as exc:
            message = str(exc)
            self._record(key, len(message), lambda: {"error": message})
            raise ToolError(message) from None
        finally:
            self.calls += 1
            if self.progress is not None:
                await self.progress(self.calls, None, f"{self.calls} tool calls; last: {entry.ref if entry else ref}")
        assert entry is not None  # an unknown tool raised above
        if result.is_error:
            raise ToolError(f"{entry.ref} returned an error: {error_text(result)}")
        limit = self.gw.config.limits.max_tool_result_bytes
        if result.structured_content is None and (size := result_bytes(result)) > limit:
            # refused before the text is parsed: JSON of many small values takes ~10x its size in memory
            raise ToolError(f"{entry.ref} returned {mib(size)} of text, more than limits.max_tool_result_bytes "
                            f"({mib(limit)}); ask the tool for less (a filter, a smaller page, fewer fields)")
        return result_to_value(result, entry.tool.output_schema, keep=self._keep)

    def _record(self, key: str, size: int, entry: Callable[[], dict[str, Any]]) -> None:
        """Keep a call's outcome for a later round, while what is kept stays within `MAX_JOURNAL_BYTES`
        (past it nothing more is kept, and the script cannot pause: `journal.save` says so)."""
        if not self.recording:
            return
        self.recorded += size
        if self.recorded > MAX_JOURNAL_BYTES:
            self.recording = False
            self.journal.calls.clear()
            self.journal.overflow = True
            return
        self.journal.calls[key] = entry()

    def _keep(self, block: types.ContentBlock) -> str:
        ref = f"block-{len(self.blocks) + 1}"
        self.blocks[ref] = block
        return ref

    def returned_blocks(self, value: Any) -> list[types.ContentBlock]:
        """The kept blocks whose descriptors appear anywhere in the returned value (each once, at most
        `MAX_RETURNED_BLOCKS`, then a note saying how many more there were)."""
        found: dict[str, types.ContentBlock] = {}
        stack = [value]
        while stack and self.blocks:
            item = stack.pop()
            if isinstance(item, dict):
                ref = item.get("ref")
                if isinstance(ref, str) and ref in self.blocks:
                    found.setdefault(ref, self.blocks[ref])
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        blocks = list(found.values())
        if len(blocks) <= MAX_RETURNED_BLOCKS:
            return blocks
        note = types.TextContent(text=f"[{len(blocks) - MAX_RETURNED_BLOCKS} more returned blocks left out: "
                                      f"a result carries at most {MAX_RETURNED_BLOCKS}]")
        return [*blocks[:MAX_RETURNED_BLOCKS], note]


async def execute(gw: Gateway, code: str, progress: Progress | None = None) -> types.CallToolResult:
    """Run a script and build the client's result: text, then any returned binary blocks."""
    try:
        await gw.quota.check_rate(gw.identity, "scripts")
        journal = await _journal(gw, code)
    except (GatewayError, ValueError) as exc:
        return text_result(str(exc), is_error=True)
    current = current_round()
    if current is not None:
        current.answers.update(journal.answers)  # the script's earlier answers count in this round
    run = ScriptRun(gw, progress, journal)
    direct = [e.direct_hint for e in gw.catalog.entries if e.direct_name]  # named in a script's errors only
    with run.scope:
        outcome = await gw.sandbox.run(code, gw.catalog.server_names() + direct, run.call, owner=gw.identity.principal)
    if run.paused is not None:
        journal.pending = run.paused.pending
        journal.answers = dict(current.answers) if current is not None else {}
        try:
            state = await journal_save(gw.storage, gw.identity.principal, journal)
        except (StorageUnavailable, ValueError) as exc:
            return text_result(f"the script needs the user's input and cannot pause for it: {exc}", is_error=True)
        raise InputNeeded(run.paused.requests, run.paused.pending, state)
    gw.metrics.scripts.labels(outcome.error.kind if outcome.error else "ok").inc()
    result = text_result(format_execution(outcome), is_error=outcome.error is not None)
    result.content.extend(run.returned_blocks(outcome.value))
    return result


async def _journal(gw: Gateway, code: str) -> Journal:
    """A fresh journal, or the one of the paused round this call retries (with the client's new answers)."""
    current = current_round()
    if current is None or current.state is None or not current.state.startswith(PREFIX):
        return Journal(digest(code))
    try:
        journal = await journal_load(gw.storage, gw.identity.principal, current.state, code)
    except StorageUnavailable as exc:
        raise ValueError(f"the paused script cannot be continued: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"the paused script cannot be continued ({exc}): run it again") from None
    for key, question in journal.pending.items():
        if key in current.responses:
            journal.answers[question] = current.responses[key]
    journal.pending = {}
    return journal


def format_execution(run: ExecutionResult) -> str:
    """What the model sees: printed output, then the result, then the error; never raw tool responses."""
    parts: list[str] = []
    if run.output.strip():  # print("") alone is no output either
        parts.append(run.output.rstrip("\n"))
    if run.output_truncated_bytes:
        parts.append(f"[output cut: {run.output_truncated_bytes} more bytes not shown]")
    if run.value is not None:
        parts.append("result = " + json.dumps(run.value, ensure_ascii=False))
    if run.error is not None:
        parts.append("Error: " + run.error.format())
    return "\n".join(parts) if parts else "(no output; assign `result = ...` or print() to return data)"
