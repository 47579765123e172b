"""Every tool of every recorded real-world catalog: stubs parse, are deterministic, agree with param_map,
and the whole catalogs' stubs weigh no more than the anchor's `dict`-only format.

The catalogs are the ones `benchmarks/tokens.py` measures, kept in the repository (`benchmarks/data/`).
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import pytest

from benchmarks.catalogs import CATALOG_DIR, anchor_stub
from mcp_gateway.tokens import count_tokens
from stubs import ServerEntry, ToolFiles, ToolSpec, is_identifier, render_docs, render_server_stub, render_tool_stub
from stubs.render import MAX_SUMMARY, first_sentence, render_signature, stub_order, stub_types
from stubs.tool import param_map
from stubs.vfs import MAX_TOOLS_LISTED
from tests.stubs.support import load_tools, specs
from tests.stubs.test_docs import assert_docs_match_stub, assert_docs_name

CATALOGS = sorted(p for p in CATALOG_DIR.glob("*.json") if not p.name.startswith("catalog-"))


def _server(path: Path) -> tuple[str, list[ToolSpec]]:
    return path.stem.replace("-", "_"), specs(load_tools(path))


def _catalog(path: Path | None) -> tuple[str, list[ToolSpec]]:
    assert path is not None, f"catalogs not found at {CATALOG_DIR}"
    return _server(path)


CASES: list[Path | None] = list(CATALOGS) or [None]
IDS = [p.stem if p else "absent" for p in CASES]


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_server_stub_parses_and_is_deterministic(path: Path | None) -> None:
    server, tools = _catalog(path)
    stub = render_server_stub(server, tools)
    tree = ast.parse(stub)
    defs = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert defs == sorted(t.identifier for t in tools)
    assert len(set(defs)) == len(tools) and all(is_identifier(d) for d in defs)
    shuffled = list(tools)
    random.Random(7).shuffle(shuffled)
    assert render_server_stub(server, shuffled) == stub


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_signatures_agree_with_param_map(path: Path | None) -> None:
    server, tools = _catalog(path)
    for tool in tools:
        func = ast.parse(render_tool_stub(server, tool)).body[-1]
        assert isinstance(func, ast.FunctionDef)
        args = [a.arg for a in func.args.args]
        mapping = param_map(tool)
        assert args == list(mapping) and all(is_identifier(a) for a in args)
        assert len(set(mapping.values())) == len(mapping)
        summary = first_sentence(tool.description, MAX_SUMMARY)
        assert render_signature(tool).partition(": ...  # ")[2].startswith(summary) and len(summary) <= MAX_SUMMARY


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_docs_render_with_a_parseable_example(path: Path | None) -> None:
    server, tools = _catalog(path)
    for tool in tools:
        docs = render_docs(server, tool)
        assert docs.startswith(f"{server}.{tool.identifier}")
        example = docs.splitlines()[-1].strip()
        call = ast.parse(example, mode="eval").body
        assert isinstance(call, ast.Call) and not call.args
        assert {k.arg for k in call.keywords} <= set(param_map(tool))
        assert render_docs(server, tool) == docs


def test_whole_catalog_as_virtual_files_in_both_layouts() -> None:
    assert CATALOGS, f"catalogs not found at {CATALOG_DIR}"
    entries = [ServerEntry(*_server(p)) for p in CATALOGS]
    for layout in ("server", "tool"):
        files = ToolFiles(entries, layout=layout)
        paths = files.paths()
        assert len(paths) == (len(entries) if layout == "server" else sum(len(e.tools) for e in entries))
        listing = files.listing()
        assert len(listing.splitlines()) == len(entries)
        for entry in entries:
            tools = files.listing(server=entry.name)
            first = sorted(t.identifier for t in entry.tools)[:MAX_TOOLS_LISTED]
            assert all(f" {ident}" in tools for ident in first)
        for path in paths:
            ast.parse(files.read(path))


MANIFESTS = sorted(CATALOG_DIR.glob("catalog-*.json"))


@pytest.mark.parametrize("manifest", MANIFESTS or [None], ids=[p.stem for p in MANIFESTS] or ["absent"])
def test_whole_catalog_stubs_are_no_larger_than_the_anchor_format(manifest: Path | None) -> None:
    """Our stubs carry nested and return types and still weigh less than `dict`-only stubs."""
    if manifest is None:
        pytest.skip(f"catalogs not found at {CATALOG_DIR}")
    ours = anchor = 0
    for server in json.loads(manifest.read_text(encoding="utf-8"))["servers"]:
        tools = specs(load_tools(CATALOG_DIR / server["file"]))
        ours += count_tokens(render_server_stub(server["server"], tools))
        anchor += count_tokens(anchor_stub(server["server"], tools))
    assert ours <= anchor, (ours, anchor)


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_docs_name_and_describe_the_stubs_classes(path: Path | None) -> None:
    """As the tool's own stub names them, and as the server's does (the file the server layout lists)."""
    server, tools = _catalog(path)
    files = ToolFiles([ServerEntry(server, tools)])
    types = stub_types(server, stub_order(tools))
    for tool in tools:
        assert_docs_match_stub(server, tool)
        assert_docs_name(files.docs(server, tool), types, tool.identifier)
