"""Loading tool lists (as `tools/list` returns them) into ToolSpecs, the way the gateway does."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stubs import ToolSpec, assign_identifiers

DATA = Path(__file__).parent / "data"
SHARED_CATALOGS = Path(__file__).resolve().parents[2].parent / "shared" / "bench" / "catalogs"


def load_tools(path: Path) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["tools"]
    return tools


def specs(tools: Sequence[Mapping[str, Any]]) -> list[ToolSpec]:
    ids = assign_identifiers([t["name"] for t in tools])
    return [
        ToolSpec(
            name=t["name"],
            identifier=ids[t["name"]],
            description=t.get("description") or "",
            input_schema=t.get("inputSchema") or {},
            output_schema=t.get("outputSchema"),
        )
        for t in tools
    ]


def spec(name: str, schema: Mapping[str, Any] | None = None, description: str = "", **kw: Any) -> ToolSpec:
    """A ToolSpec for small hand-written cases; identifier defaults to the name."""
    return ToolSpec(
        name=name,
        identifier=kw.pop("identifier", name),
        description=description,
        input_schema=schema if schema is not None else {"type": "object", "properties": {}},
        **kw,
    )


def data_specs(server: str) -> dict[str, ToolSpec]:
    """The copied tools of one server, by upstream name."""
    return {s.name: s for s in specs(load_tools(DATA / f"{server}.json"))}


def data_servers() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.json"))
