"""All upstreams' tools under the names clients and scripts use for them.

A catalog is an immutable snapshot; the gateway builds a new one whenever an upstream
changes state or tool list, so readers never see a half-updated view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import mcp_types as types

from sandbox import direct_tool
from stubs import ServerEntry, ToolFiles, ToolSpec, accepts_null, assign_identifiers, parameters

from .config import GatewayConfig
from .governance.identity import Identity
from .naming import DirectNames
from .results import wrapped_output
from .upstream import Upstream

Layout = Literal["server", "tool"]


@dataclass(frozen=True)
class ToolEntry:
    """One upstream tool with every name it is known by.

    `params` maps script keywords (identifiers) to schema property names; `drop_none` names the
    optional properties that cannot take null (computed once, from the same parameter list the
    stub shows).
    """

    server: str
    tool: types.Tool
    spec: ToolSpec
    params: Mapping[str, str]
    direct_name: str | None
    drop_none: frozenset[str]

    @property
    def ref(self) -> str:
        return f"{self.server}.{self.spec.identifier}"

    @property
    def direct_hint(self) -> str:
        """A direct-mode tool as the sandbox is told of it, so a script calling it hears the name to use."""
        return direct_tool(self.ref, self.direct_name or self.ref)

    def upstream_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Map script keyword names (identifiers) back to the schema's property names.

        Stubs show optional parameters as `= None` ("may be left out"), so a script that passes
        `None` to one whose schema does not accept null means "leave it out", and it is left out.
        """
        mapped = {self.params.get(k, k): v for k, v in arguments.items()}
        return {k: v for k, v in mapped.items() if v is not None or k not in self.drop_none}


@dataclass(frozen=True)
class Catalog:
    entries: tuple[ToolEntry, ...]
    code_servers: tuple[ServerEntry, ...]
    files: ToolFiles
    by_ref: Mapping[str, ToolEntry]
    by_direct_name: Mapping[str, ToolEntry]

    def code_refs(self) -> list[str]:
        return [e.ref for e in self.entries if e.direct_name is None]

    def resolve_ref(self, server: str, tool: str) -> ToolEntry | None:
        """Find a code-mode tool by identifier, or by its upstream name."""
        return self.by_ref.get(f"{server}.{tool}")

    def server_names(self) -> list[str]:
        return [s.name for s in self.code_servers]


def build_catalog(config: GatewayConfig, upstreams: Sequence[Upstream]) -> Catalog:
    """Snapshot every ready upstream's tools; unavailable code-mode servers keep a status line."""
    entries: list[ToolEntry] = []
    statuses: dict[str, str] = {}
    direct_names = DirectNames(config.gateway.name, config.gateway.prefix_direct_tools)
    for up in upstreams:
        direct = config.mode_of(up.config) == "direct"
        ids = assign_identifiers([t.name for t in up.tools])
        entries += [_entry(up.name, t, ids[t.name], direct_names.name_for(up.name, t.name) if direct else None)
                    for t in sorted(up.tools, key=lambda t: t.name)]
        if not direct:
            statuses[up.name] = "ok" if up.state == "ready" else up.reason
    return _assemble(entries, statuses, config.gateway.layout)


def restrict(catalog: Catalog, identity: Identity, layout: Layout) -> Catalog:
    """The catalog as `identity` sees it: a tool it may not call does not exist for it."""
    entries = [e for e in catalog.entries if identity.allows(e.server, e.tool.name, e.spec.identifier)]
    visible = {e.server for e in entries}
    statuses = {s.name: s.status for s in catalog.code_servers
                if s.name in visible or (s.status != "ok" and identity.may_see_server(s.name))}
    return _assemble(entries, statuses, layout)


def _assemble(entries: Sequence[ToolEntry], statuses: Mapping[str, str], layout: Layout) -> Catalog:
    by_ref: dict[str, ToolEntry] = {}
    for e in entries:
        if e.direct_name is None:
            by_ref[e.ref] = e
            by_ref.setdefault(f"{e.server}.{e.tool.name}", e)
    code_servers = tuple(
        ServerEntry(name, tuple(e.spec for e in entries if e.server == name and e.direct_name is None), status)
        for name, status in statuses.items()
    )
    return Catalog(
        entries=tuple(entries),
        code_servers=code_servers,
        files=ToolFiles(code_servers, layout=layout),
        by_ref=by_ref,
        by_direct_name={e.direct_name: e for e in entries if e.direct_name is not None},
    )


def _entry(server: str, tool: types.Tool, identifier: str, direct_name: str | None) -> ToolEntry:
    spec = ToolSpec(
        name=tool.name,
        identifier=identifier,
        description=tool.description or "",
        input_schema=tool.input_schema,
        output_schema=_output_schema(tool),
    )
    params = parameters(spec)
    drop_none = frozenset(p.name for p in params if not p.required and not accepts_null(p.schema, spec.input_schema))
    return ToolEntry(server, tool, spec, {p.identifier: p.name for p in params}, direct_name, drop_none)


def _output_schema(tool: types.Tool) -> Mapping[str, Any] | None:
    """The schema of what a script receives: unwrapped like `result_to_value` unwraps values."""
    schema = tool.output_schema
    if schema is None:
        return None
    inner = wrapped_output(schema)
    if inner is None:
        return schema
    return {**inner, "$defs": schema["$defs"]} if "$defs" in schema else inner
