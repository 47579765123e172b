"""The names clients see: the `mcp__<gateway>__` prefix, its 64-character limit, direct-mode and prompt names."""

from __future__ import annotations

import hashlib
import re

CLIENT_NAME_LIMIT = 64
"""Claude Code refuses tool names longer than this, prefix included."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def client_prefix(gateway_name: str) -> str:
    """What a client puts before each of the gateway's tool names (`mcp__gw__`)."""
    return f"mcp__{gateway_name}__"


def clean_name(text: str) -> str:
    """Letters, digits, `_` and `-` only: anything else becomes `_`."""
    return _UNSAFE.sub("_", text)


def prompt_name(server: str, name: str, *, pass_through: bool) -> str:
    """Prompts keep their name where tool names pass through; otherwise `<server>_<name>`."""
    return name if pass_through else clean_name(f"{server}_{name}")


class DirectNames:
    """Unique client-facing names for direct-mode tools, short enough for `mcp__<gw>__<name>`."""

    def __init__(self, gateway_name: str, prefix: bool) -> None:
        self.prefix = prefix
        self.limit = CLIENT_NAME_LIMIT - len(client_prefix(gateway_name))
        self.taken: set[str] = set()

    def name_for(self, server: str, tool: str) -> str:
        if not self.prefix:
            self.taken.add(tool)
            return tool
        name = clean_name(f"{server}_{tool}")
        if len(name) > self.limit or name in self.taken:
            digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()
            for length in range(6, len(digest) + 1):  # longer digests until the name is free
                candidate = f"{name[: self.limit - length - 1]}_{digest[:length]}"
                if candidate not in self.taken:
                    break
            name = candidate
        self.taken.add(name)
        return name
