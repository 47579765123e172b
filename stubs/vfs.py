"""The virtual `servers/` directory the model browses with listToolFiles and readToolFile.

Built once per catalog snapshot; files are rendered on first read and then kept, so a server
with hundreds of tools costs nothing until someone reads it. The listing starts small (one
line per server) and narrows to a server's tools or to the tools matching a query, so that it
stays short at a thousand tools. Paths are forgiving (prefix and extension optional) because a
model that guesses a slightly different spelling should still get the file, and an unknown
path answers with the files that do exist.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from .docs import render_docs, tool_docs
from .render import (
    MAX_SUMMARY,
    StubTypes,
    first_sentence,
    render_server_stub,
    render_tool_stub,
    server_path,
    stub_order,
    stub_types,
    tool_path,
)
from .search import Document, rank
from .tool import ToolSpec

__all__ = ["FileNotFound", "ServerEntry", "ToolFiles", "UnknownServer", "line_range"]

MAX_LISTED = 20
"""Paths named in a FileNotFound message; the count tells how many more exist."""
MAX_SERVERS_LISTED = 100
"""Servers in a listing without arguments."""
MAX_TOOLS_LISTED = 50
"""Tools in a listing of one server."""
MAX_MATCHES = 15
"""Tools in a listing for a query."""


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


class UnknownServer(LookupError):
    """A listing narrowed to a server that is not there; the message names the servers that are."""

    def __init__(self, server: str, available: Sequence[str]) -> None:
        self.server = server
        self.available = tuple(available)
        names = ", ".join(self.available) if self.available else "none"
        super().__init__(f"No server {path_repr(server)}. Servers: {names}")

    def __str__(self) -> str:
        return str(self.args[0])


class ToolFiles:
    """`servers/<server>.pyi` per server and `servers/<server>/<tool>.pyi` per tool.

    Both kinds can always be read; the layout decides which kind the listing names (and
    `paths` returns). So a model in the server layout can still read just the three tools it
    needs (`github.list_issues`), and one in the tool layout a whole server at once.
    """

    def __init__(self, servers: Sequence[ServerEntry], layout: Literal["server", "tool"] = "server") -> None:
        self.layout = layout
        self.servers = tuple(sorted(servers, key=lambda s: s.name))
        self._entries: dict[str, ServerEntry] = {}
        self._tools: dict[str, dict[str, ToolSpec]] = {}
        for entry in self.servers:
            self._entries.setdefault(entry.name, entry)
            self._tools.setdefault(entry.name, _by_identifier(entry.tools))
        self._render: dict[str, Callable[[], str]] = {}
        self._listed: list[str] = []
        self._keys: dict[str, str] = {}
        self._cache: dict[str, str] = {}
        self._line_cache: dict[str, dict[str, int]] = {}
        self._types: dict[str, StubTypes] = {}
        self._docs: dict[tuple[str, str], str] = {}
        self._documents: list[Document] | None = None
        for entry in self.servers:
            if entry.available:
                self._add_server(entry)
                self._add_tools(entry)

    def _add_server(self, entry: ServerEntry) -> None:
        path = server_path(entry.name)
        self._render[path] = partial(render_server_stub, entry.name, entry.tools)
        self._keys[entry.name] = path
        if self.layout == "server":
            self._listed.append(path)

    def _add_tools(self, entry: ServerEntry) -> None:
        """One file per tool, named by identifier; upstream names are accepted as aliases."""
        for tool in self._tools[entry.name].values():
            path = tool_path(entry.name, tool.identifier)
            self._render[path] = partial(render_tool_stub, entry.name, tool)
            self._keys[f"{entry.name}/{tool.identifier}"] = path
            if self.layout == "tool":
                self._listed.append(path)
        for tool in sorted(entry.tools, key=lambda t: (t.identifier, t.name)):
            self._keys.setdefault(f"{entry.name}/{tool.name}", tool_path(entry.name, tool.identifier))

    def paths(self) -> list[str]:
        """The files the listing names, grouped by server (servers by name, tools by identifier)."""
        return list(self._listed)

    def listing(self, server: str | None = None, query: str | None = None) -> str:
        """What listToolFiles shows.

        Without arguments, one line per server (a file, or a directory in the tool layout) with
        its tool count, or why it is unavailable. `server` lists that server's tools instead,
        one line each with its summary; `query` lists the tools that best match it, grouped by
        file. Long lists are cut and say how many entries were not shown.
        """
        server = (server or "").strip() or None
        query = (query or "").strip() or None
        if server is not None:
            entry = self._entries.get(server)
            if entry is None:
                raise UnknownServer(server, [s.name for s in self.servers])
            if not entry.available:
                return self._server_line(entry)
            if query is None:
                return self._server_tools(entry)
        if query is not None:
            return self._matches(query, server)
        lines = [self._server_line(e) for e in self.servers[:MAX_SERVERS_LISTED]]
        if len(self.servers) > MAX_SERVERS_LISTED:
            hidden = len(self.servers) - MAX_SERVERS_LISTED
            lines.append(f"… {hidden} more servers not shown; query=... finds tools on all of them")
        return "\n".join(lines)

    def _server_tools(self, entry: ServerEntry) -> str:
        identifiers = list(self._tools[entry.name])
        shown = identifiers[:MAX_TOOLS_LISTED]
        lines = self._group(entry, shown)
        if len(identifiers) > len(shown):
            lines.append(f"… {len(identifiers) - len(shown)} more tools not shown; add query=... to find one")
        return "\n".join(lines)

    def _server_line(self, entry: ServerEntry) -> str:
        path = server_path(entry.name) if self.layout == "server" else f"servers/{entry.name}/"
        note = _plural(len(self._tools[entry.name])) if entry.available else unavailable_text(entry.status)
        return f"{path}  ({note})"

    def _group(self, entry: ServerEntry, identifiers: Sequence[str]) -> list[str]:
        """A server's line, then one indented line per tool: `L12 name  # summary` (the stub's line)."""
        tools = self._tools[entry.name]
        numbers = self._line_numbers(entry) if self.layout == "server" else {}
        lines = [self._server_line(entry)]
        for ident in identifiers:
            tool = tools[ident]
            head = f"L{numbers[ident]} {ident}" if ident in numbers else f"{ident}.pyi"
            summary = first_sentence(tool.description, MAX_SUMMARY)
            lines.append(f"  {head}  # {summary}" if summary else f"  {head}")
        return lines

    def _line_numbers(self, entry: ServerEntry) -> dict[str, int]:
        """Where each tool's `def` is in the server's stub, for readToolFile's line range.

        Found once per server, like the stub itself: every listing of its tools needs them.
        """
        found = self._line_cache.get(entry.name)
        if found is None:
            found = self._line_cache[entry.name] = {}
            for number, line in enumerate(self.read(server_path(entry.name)).splitlines(), 1):
                if line.startswith("def "):
                    found.setdefault(line[4:].partition("(")[0], number)
        return found

    def _matches(self, query: str, server: str | None) -> str:
        documents = [d for d in self.documents() if server is None or d.server == server]
        ranked = rank(query, documents)
        quoted = path_repr(query)
        if not ranked:
            where = f" on {server}" if server else ""
            listing = self.listing(server) if server else self.listing()
            return f"No tool{where} matches {quoted}. Listing instead:\n{listing}"
        shown = ranked[:MAX_MATCHES]
        by_server: dict[str, list[str]] = {}
        for name, ident in shown:
            by_server.setdefault(name, []).append(ident)
        lines = [f"{len(ranked)} tool{'' if len(ranked) == 1 else 's'} match {quoted}, best first:"]
        for name, idents in by_server.items():
            lines += self._group(self._entries[name], idents)
        if len(ranked) > len(shown):
            lines.append(f"… {len(ranked) - len(shown)} more matches not shown; use more specific words")
        return "\n".join(lines)

    def documents(self) -> list[Document]:
        """Every available tool as the search ranks it (built on the first query)."""
        if self._documents is None:
            self._documents = [
                Document((e.name, t.identifier), e.name, (t.identifier, t.name), t.description)
                for e in self.servers if e.available for t in self._tools[e.name].values()
            ]  # fmt: skip
        return self._documents

    def read(self, path: str) -> str:
        """The file's text; FileNotFound (naming the files there are) for anything else."""
        key = _key(path)
        found = self._keys.get(key)
        if found is None and "/" not in key:
            found = self._keys.get(key.replace(".", "/", 1))
        if found is None:
            raise self._missing(path, key)
        if found not in self._cache:
            self._cache[found] = self._render[found]()
        return self._cache[found]

    def docs(self, server: str, tool: ToolSpec) -> str:
        """`tool`'s full docs (getToolDocs), naming its types as the file the listing names for it does.

        That is the server's stub in the server layout, whose classes the server's tools share (so
        their names can differ from the tool's own stub: `Target2`, `MonitorResult`), and the
        tool's own stub in the tool layout. Kept once rendered, like the files.
        """
        entry = self._entries.get(server)
        if entry is None or self.layout == "tool" or self._tools[server].get(tool.identifier) is not tool:
            return render_docs(server, tool)
        key = (server, tool.identifier)
        if key not in self._docs:
            if server not in self._types:
                self._types[server] = stub_types(server, stub_order(entry.tools))
            self._docs[key] = tool_docs(server, tool, self._types[server])
        return self._docs[key]

    def _missing(self, path: str, key: str) -> FileNotFound:
        """The error for `path`, listing the likeliest files first: same server, then closest spelling."""
        paths = self.paths()
        ranked = difflib.get_close_matches(f"servers/{key}.pyi", paths, n=max(len(paths), 1), cutoff=0)
        server = re.split(r"[/.]", key, maxsplit=1)[0]
        same = [p for p in ranked if p == server_path(server) or p.startswith(f"servers/{server}/")]
        entry = self._entries.get(server)
        down = entry if entry is not None and not entry.available else None
        note = f"server {server} is {unavailable_text(down.status)}" if down else None
        return FileNotFound(path, [*same, *(p for p in ranked if p not in same)], note)


def line_range(text: str, start: int | None, end: int | None, path: str) -> str:
    """Lines `start` to `end` of a file (1-based, inclusive, clamped), as they are: no numbers added.

    A part of a file starts with one comment line saying which part it is, so that several
    parts read in one call can be told apart.
    """
    lines = text.splitlines()
    first = max(1, start or 1)
    last = min(len(lines), end if end is not None else len(lines))
    if first == 1 and last == len(lines):
        return text
    if first > last:
        return f"# {path}: no lines {first}-{end if end is not None else first}; it has {len(lines)} lines\n"
    return f"# {path}, lines {first}-{last} of {len(lines)}\n" + "\n".join(lines[first - 1 : last]) + "\n"


def _by_identifier(tools: Sequence[ToolSpec]) -> dict[str, ToolSpec]:
    """Identifier -> tool, one per identifier, in identifier order (the stub's order).

    Built once per server when the directory is: every listing and search needs it.
    """
    found: dict[str, ToolSpec] = {}
    for tool in sorted(tools, key=lambda t: (t.identifier, t.name)):
        found.setdefault(tool.identifier, tool)
    return found


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
