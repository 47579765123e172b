"""Who is calling, and the one allowlist function every path uses.

A caller is an `Identity`: its allow patterns are the union of its groups' tool patterns, its
deny patterns win over them, and a group endpoint (`/mcp/<group>`) narrows it further. The
identity of the request being served lives in a context variable, set once where the request
enters (HTTP middleware, stdio, or the embedding API), so no code path can forget to pass it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..config import GatewayConfig


@dataclass(frozen=True)
class Identity:
    """A caller: its name (the key's, or a signed-in user's), team, and the patterns that decide what it
    may see and call."""

    name: str
    team: str | None = None
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    endpoint: tuple[str, ...] | None = None
    group: str | None = None
    admin: bool = False
    subject: str | None = None
    """A signed-in caller's `sub` at the provider ([sign_in]); None for an API key."""
    local: bool = False
    """`OPEN`, the caller of a gateway without keys (never a key, whatever a key is named)."""

    @property
    def principal(self) -> str:
        """Who the caller is, unambiguously: `user:<sub>` for a signed-in user, `key:<name>` for an API key
        (`local` for `OPEN`). Every per-caller share, counter and owner is keyed by it, and audit rows
        record it: a name is for display only, since a user may choose an email equal to a key's name."""
        if self.local:
            return "local"
        return f"user:{self.subject}" if self.subject is not None else f"key:{self.name}"

    def allows(self, server: str, tool: str, alias: str | None = None) -> bool:
        """Deny by default; `deny` wins; a group endpoint must allow it too.

        A pattern may name the tool by its upstream name or by `alias`, the identifier stubs show
        (`delete_repo` for `delete-repo`); a deny matching either name denies.
        """
        refs = [f"{server}.{tool}"] if alias is None or alias == tool else [f"{server}.{tool}", f"{server}.{alias}"]

        def matched(patterns: Iterable[str]) -> bool:
            return any(fnmatchcase(ref, p) for p in patterns for ref in refs)

        if matched(self.deny):
            return False
        if self.endpoint is not None and not matched(self.endpoint):
            return False
        return matched(self.allow)

    def may_see_server(self, server: str) -> bool:
        """Whether any allow pattern could match a tool of `server` (for servers that are down), and no
        deny pattern covers every tool of it."""
        def any_for(patterns: Iterable[str]) -> bool:
            return any(fnmatchcase(server, p.split(".", 1)[0]) for p in patterns)

        # A pattern that matches these two made-up tool names matches any name: it denies the server.
        denied = any(fnmatchcase(f"{server}.\0", p) and fnmatchcase(f"{server}.\0\1.\2", p) for p in self.deny)
        return not denied and any_for(self.allow) and (self.endpoint is None or any_for(self.endpoint))

    def may_use(self, server: str, tools: Iterable[str]) -> bool:
        """Whether the caller may use an upstream's resources and prompts: it may call one of its tools
        (an upstream without tools: its allow patterns name the server)."""
        names = list(tools)
        if names:
            return any(self.allows(server, t) for t in names)
        return self.may_see_server(server)

    def at_endpoint(self, group: str, patterns: Iterable[str]) -> Identity:
        return dataclasses.replace(self, endpoint=tuple(patterns), group=group)


OPEN = Identity("local", allow=("*",), admin=True, local=True)
"""The caller when no keys exist: the gateway then serves loopback only, and everything is allowed. Its
principal is `local`: a key created later, whatever its name, never inherits what it left (logins,
paused scripts)."""

NOBODY = Identity("nobody")
"""The caller when keys exist but none was presented through this path: nothing is visible."""

_current: ContextVar[Identity | None] = ContextVar("mcp_gateway_identity", default=None)


def current_identity(default: Identity) -> Identity:
    return _current.get() or default


@contextlib.contextmanager
def acting_as(identity: Identity) -> Iterator[None]:
    """Run the block (and every task it starts) as `identity`."""
    token = _current.set(identity)
    try:
        yield
    finally:
        _current.reset(token)


def identity_for(config: GatewayConfig, name: str, team: str | None, groups: Iterable[str],
                 remove: Iterable[str] = (), deny: Iterable[str] = (), admin: bool = False) -> Identity:
    """The effective allowlist: the team's groups plus the key's, minus the removed ones."""
    names = [*(config.teams[team].groups if team in config.teams else []), *groups]
    removed = set(remove)
    patterns = [p for g in dict.fromkeys(names) if g not in removed and g in config.groups
                for p in config.groups[g].tools]
    return Identity(name, team, tuple(dict.fromkeys(patterns)), tuple(deny), admin=admin)
