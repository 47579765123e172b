"""Loading tool lists (as `tools/list` returns them) into ToolSpecs, the way the gateway does.

`specs` lives in `benchmarks/catalogs.py`, so that these tests and `benchmarks/tokens.py` read
recorded tools one way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.catalogs import CATALOG_DIR, specs
from stubs import ToolSpec

__all__ = ["CATALOG_DIR", "DATA", "data_servers", "data_specs", "load_tools", "spec", "specs"]

DATA = Path(__file__).parent / "data"


def load_tools(path: Path) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["tools"]
    return tools


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
