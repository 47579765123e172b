"""The virtual `servers/` directory the model browses with listToolFiles and readToolFile.

Built once per catalog snapshot; files are rendered on first read and then kept, so a server
with hundreds of tools costs nothing until someone reads it. Paths are forgiving (prefix and
extension optional) because a model that guesses a slightly different spelling should still
get the file, and an unknown path answers with the files that do exist.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from .render import render_server_stub, render_tool_stub, server_path, tool_path
from .tool import ToolSpec

__all__ = ["FileNotFound", "ServerEntry", "ToolFiles"]

MAX_LISTED = 20
"""Paths named in a FileNotFound message; the count tells how many more exist."""


@dataclass(frozen=True)
class ServerEntry:
    """A code-mode server: its tools, and `status` ("ok", or why it cannot be used right now)."""

    name: str
    tools: Sequence[ToolSpec]
    status: str = "ok"

    @property
    def available(self) -> bool:
        return self.status == "ok"


class FileNotFound(LookupError):
    """A read of a path that is not in the listing; the message names files that are."""

    def __init__(self, path: str, available: Sequence[str], note: str | None = None) -> None:
        self.path = path
        self.available = tuple(available)
        self.note = note
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"No tool file {path_repr(self.path)}" + (f": {self.note}" if self.note else "")
        count = len(self.available)
        if not count:
            return f"{head}. No tool files are available."
        shown = ", ".join(self.available[:MAX_LISTED])
        more = f", … ({count - MAX_LISTED} more; listToolFiles lists all)" if count > MAX_LISTED else ""
        return f"{head}. {count} file{'' if count == 1 else 's'} available: {shown}{more}"

    def __str__(self) -> str:
        return self._message()


def path_repr(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unavailable_text(status: str) -> str:
    """Status for a listing line; always says "unavailable" so the model does not try the server."""
    return status if status.startswith("unavailable") else f"unavailable: {status}"


def _plural(n: int) -> str:
    return f"{n} tool" + ("" if n == 1 else "s")


class ToolFiles:
    """`servers/<server>.pyi` per server, or `servers/<server>/<tool>.pyi` per tool."""

    def __init__(self, servers: Sequence[ServerEntry], layout: Literal["server", "tool"] = "server") -> None:
        self.layout = layout
        self.servers = tuple(sorted(servers, key=lambda s: s.name))
        self._render: dict[str, Callable[[], str]] = {}
        self._keys: dict[str, str] = {}
        self._cache: dict[str, str] = {}
        for entry in self.servers:
            if entry.available and layout == "server":
                self._add_server(entry)
            elif entry.available:
                self._add_tools(entry)

    def _add_server(self, entry: ServerEntry) -> None:
        path = server_path(entry.name)
        self._render[path] = partial(render_server_stub, entry.name, entry.tools)
        self._keys[entry.name] = path

    def _add_tools(self, entry: ServerEntry) -> None:
        """One file per tool, named by identifier; upstream names are accepted as aliases."""
        tools = sorted(entry.tools, key=lambda t: (t.identifier, t.name))
        for tool in tools:
            path = tool_path(entry.name, tool.identifier)
            if path not in self._render:
                self._render[path] = partial(render_tool_stub, entry.name, tool)
                self._keys[f"{entry.name}/{tool.identifier}"] = path
        for tool in tools:
            self._keys.setdefault(f"{entry.name}/{tool.name}", tool_path(entry.name, tool.identifier))

    def paths(self) -> list[str]:
        """Readable files, grouped by server (servers by name, tools by identifier)."""
        return list(self._render)

    def listing(self) -> str:
        """What listToolFiles shows: one line per file, unavailable servers with their reason."""
        lines: list[str] = []
        for entry in self.servers:
            if self.layout == "server":
                note = _plural(len(entry.tools)) if entry.available else unavailable_text(entry.status)
                lines.append(f"{server_path(entry.name)}  ({note})")
            else:
                lines += self._tool_lines(entry)
        return "\n".join(lines)

    def _tool_lines(self, entry: ServerEntry) -> list[str]:
        if not entry.available:
            return [f"servers/{entry.name}/  ({unavailable_text(entry.status)})"]
        files = [p for p in self._render if p.startswith(f"servers/{entry.name}/")]
        return [f"servers/{entry.name}/  ({_plural(len(files))})", *files]

    def read(self, path: str) -> str:
        """The file's text; FileNotFound (naming the files there are) for anything else."""
        key = _key(path)
        found = self._keys.get(key)
        if found is None and self.layout == "tool" and "/" not in key:
            found = self._keys.get(key.replace(".", "/", 1))
        if found is None:
            raise self._missing(path, key)
        if found not in self._cache:
            self._cache[found] = self._render[found]()
        return self._cache[found]

    def _missing(self, path: str, key: str) -> FileNotFound:
        """The error for `path`, listing the likeliest files first: same server, then closest spelling."""
        paths = self.paths()
        ranked = difflib.get_close_matches(f"servers/{key}.pyi", paths, n=max(len(paths), 1), cutoff=0)
        server = re.split(r"[/.]", key, maxsplit=1)[0]
        same = [p for p in ranked if p == server_path(server) or p.startswith(f"servers/{server}/")]
        down = next((s for s in self.servers if s.name == server and not s.available), None)
        note = f"server {server} is {unavailable_text(down.status)}" if down else None
        return FileNotFound(path, [*same, *(p for p in ranked if p not in same)], note)


def _key(path: str) -> str:
    """`servers/github.pyi`, `/servers/github`, `github.pyi` and `github` all name one file."""
    key = path.strip().replace("\\", "/")
    while key.startswith(("/", "./")):
        key = key[2:] if key.startswith("./") else key[1:]
    key = key.removeprefix("servers/")
    for suffix in (".pyi", ".py"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    return key.rstrip("/")
