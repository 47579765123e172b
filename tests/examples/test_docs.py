"""Configuration examples in the docs are real: every TOML block validates as a gateway config."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from mcp_gateway.config_files import parse_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```toml\n(.*?)```", re.S)


def toml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        for i, block in enumerate(BLOCK.findall(doc.read_text(encoding="utf-8"))):
            if "[servers." in block or "[gateway]" in block or "[keys." in block:
                blocks.append((f"{doc.name}#{i}", block))
    return blocks


@pytest.mark.parametrize(("where", "block"), toml_blocks())
def test_toml_examples_validate(where: str, block: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block):
        monkeypatch.setenv(var, "x" * 24)
    parse_config(tomllib.loads(block), source=where)


def test_there_are_examples_to_check() -> None:
    assert len(toml_blocks()) >= 3


def test_every_name_the_embedding_docs_import_exists() -> None:
    """`from mcp_gateway import ...` lines and the API table of docs/embedding.md name the public API."""
    import mcp_gateway

    text = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8") + (ROOT / "README.md").read_text("utf-8")
    imported = {n.strip() for line in re.findall(r"from mcp_gateway import ([^\n]+)", text) for n in line.split(",")}
    tabled = set(re.findall(r"^\| `(?:await )?([a-z_A-Z]+)\(", text, re.M))
    names = (imported | tabled) - {"gw"}
    assert {"Gateway", "build_app", "call", "list_tools", "acting_as"} <= names
    assert [n for n in sorted(names) if not hasattr(mcp_gateway, n)] == []
    assert set(mcp_gateway.__all__) >= names
