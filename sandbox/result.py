"""What a run returns, and the exception a tool caller raises; shared by the gateway and the sandbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Called as `call("server.tool", args)`; returns a JSON-like value or raises `ToolError`."""

_LABELS = {
    "syntax": "SyntaxError",
    "resolve": "ResolveError",
    "runtime": "Error",
    "tool": "ToolError",
    "limit": "LimitError",
}


class ToolError(Exception):
    """A tool call that failed; its message becomes the script's error (or `try_call`'s value)."""


KINDS = ("syntax", "resolve", "runtime", "tool", "limit")
"""Every way a script can stop; anything else a worker reports is counted as "runtime"."""


@dataclass
class ScriptError:
    """Why a script stopped, located in the model's own source when possible.

    `kind` is one of "syntax", "resolve", "runtime", "tool" or "limit"; `line` and `column`
    are 1-based.
    """

    kind: str
    message: str
    line: int | None = None
    column: int | None = None
    source_line: str | None = None

    def format(self) -> str:
        """A short report for the model: kind, place, message, then the line with a caret."""
        label = _LABELS.get(self.kind, self.kind)
        if self.line is None:
            return f"{label}: {self.message}"
        where = f"line {self.line}" if self.column is None else f"line {self.line}, column {self.column}"
        text = f"{label} at {where}: {self.message}"
        if self.source_line is None:
            return text
        code = self.source_line.rstrip()
        stripped = code.lstrip()
        text += f"\n    {stripped}"
        if self.column is not None:
            offset = max(0, self.column - 1 - (len(code) - len(stripped)))
            text += "\n    " + " " * min(offset, len(stripped)) + "^"
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptError:
        """From a worker's `done` frame; tolerant of missing fields."""
        return cls(
            kind=kind if (kind := data.get("kind")) in KINDS else "runtime",
            message=str(data.get("message", "")),
            line=_opt_int(data.get("line")),
            column=_opt_int(data.get("column")),
            source_line=data.get("source_line") if isinstance(data.get("source_line"), str) else None,
        )


@dataclass
class ExecutionResult:
    """The outcome of one run.

    `output` is what the script printed, cut to `max_output_bytes` (the first part is kept;
    `output_truncated_bytes` says how much was dropped, and the caller words the note).
    `value` is the script's global `result` (None if unset or on error).
    """

    output: str
    value: Any
    error: ScriptError | None
    tool_calls: int
    output_truncated_bytes: int


def failed(kind: str, message: str, tool_calls: int = 0) -> ExecutionResult:
    """The result of a run stopped by the sandbox (a limit, a dead worker) rather than by the script."""
    return ExecutionResult("", None, ScriptError(kind, message), tool_calls, 0)


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
