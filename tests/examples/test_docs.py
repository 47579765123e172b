"""Configuration examples in the docs are real: every TOML block validates as a gateway config."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from mcp_gateway.config import parse_config

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
