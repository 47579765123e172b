"""Discovery end to end: real recorded tool lists behind the gateway, read through an SDK client.

The upstreams are `tests/fixtures/catalog_server.py` replaying the real tools copied into
`tests/stubs/data/`; the client sees only the four meta-tools and finds, reads and calls the
real tools through them.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest

from mcp_gateway.codemode import META_TOOLS
from mcp_gateway.tokens import tool_definition_tokens
from stubs.schema import py_literal
from stubs.tool import param_map
from tests.fixtures.catalog_server import minimal
from tests.helpers import gateway_client, key_client, make_config, shared_gateway, stdio, text_of
from tests.stubs.support import DATA, data_servers, data_specs

pytestmark = pytest.mark.anyio

SERVERS = {name: stdio("catalog_server", str(DATA / f"{name}.json")) for name in data_servers()}
BUDGET = 600


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# One gateway in front of every recorded server: the tests using it only read stubs and call stateless tools.
catalog_url = shared_gateway(SERVERS)


def test_meta_tool_definitions_fit_the_budget() -> None:
    assert tool_definition_tokens(META_TOOLS, prefix="mcp__gw__") < BUDGET
    for tool in META_TOOLS:
        assert tool.description and len(tool.description) <= 2048
        assert tool.input_schema["type"] == "object" and isinstance(tool.input_schema["properties"], dict)
        assert tool.meta == {"anthropic/alwaysLoad": True}
    teaching = META_TOOLS[3].description or ""
    for needed in ("server.tool(arg=value)", "keyword", "result = ", "print(", "parallel([", "try_parallel(",
                   "try_call(", "json_encode", "json_decode", "import", "try/except", "f-strings", "**", ".elems()"):
        assert needed in teaching, needed


async def test_what_a_client_receives_fits_the_budget(catalog_url: str) -> None:
    async with key_client(catalog_url) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == [t.name for t in META_TOOLS]
    assert tool_definition_tokens(tools, prefix="mcp__gw__") < BUDGET


async def test_listing_narrows_by_server_and_query(catalog_url: str) -> None:
    async with key_client(catalog_url) as client:
        servers = text_of(await client.call_tool("listToolFiles", {}))
        notion = text_of(await client.call_tool("listToolFiles", {"server": "notion"}))
        found = text_of(await client.call_tool("listToolFiles", {"query": "calendar event"}))
        narrowed = text_of(await client.call_tool("listToolFiles", {"server": "github", "query": "issue"}))
        unknown = await client.call_tool("listToolFiles", {"server": "nope"})
        line = int(notion.splitlines()[1].split()[0][1:])
        def_line = text_of(await client.call_tool("readToolFile", {"fileName": "servers/notion.pyi",
                                                                    "startLine": line, "endLine": line}))
    assert servers.splitlines() == [f"servers/{s}.pyi  ({len(data_specs(s))} tool{'s' * (len(data_specs(s)) > 1)})"
                                    for s in data_servers()]  # fmt: skip
    assert notion.splitlines()[0] == "servers/notion.pyi  (4 tools)" and len(notion.splitlines()) == 5
    assert notion.splitlines()[1].endswith("API_move_page  # Notion | Move a page")
    assert def_line.splitlines()[1].startswith("def API_move_page(")
    assert found.splitlines()[0].endswith('match "calendar event", best first:')
    assert found.splitlines()[1:3] == [
        "servers/google_calendar.pyi  (2 tools)",
        "  L6 create_event  # Create a new calendar event",
    ]
    assert "servers/google_docs.pyi" in found and "github" not in found
    assert narrowed.splitlines()[1] == "servers/github.pyi  (2 tools)" and "issue_write" in narrowed
    assert unknown.is_error and text_of(unknown).startswith('No server "nope". Servers: filesystem, firecrawl')


async def test_read_several_files_and_line_ranges(catalog_url: str) -> None:
    async with key_client(catalog_url) as client:
        async def read(**args: Any) -> tuple[str, bool]:
            out = await client.call_tool("readToolFile", args)
            return text_of(out), bool(out.is_error)

        notion, _ = await read(fileName="servers/notion.pyi")
        github, _ = await read(fileName="github")
        both, both_error = await read(fileName="servers/notion.pyi, github")
        listed, _ = await read(fileName=["notion", "github"])
        part, _ = await read(fileName="notion", startLine=3, endLine="5")
        parts, _ = await read(fileName="notion,github", startLine=1, endLine=2)
        some, some_error = await read(fileName="notion, nope")
        none, none_error = await read(fileName="nope, nada")
        empty, empty_error = await read(fileName=" ")
    assert both == listed == notion + "\n" + github and not both_error  # a blank line between files
    assert part == f"# notion, lines 3-5 of {len(notion.splitlines())}\n" + "\n".join(notion.splitlines()[2:5]) + "\n"
    assert parts.splitlines() == [f"# notion, lines 1-2 of {len(notion.splitlines())}", *notion.splitlines()[:2], "",
                                  f"# github, lines 1-2 of {len(github.splitlines())}", *github.splitlines()[:2]]
    assert not any(line[:1].isdigit() for line in notion.splitlines())  # no line numbers added
    assert some.startswith(notion) and '# No tool file "nope"' in some and not some_error
    assert none_error and none.count("No tool file") == 2
    assert empty_error and "fileName is empty" in empty
    for stub in (notion, github):
        ast.parse(stub)


async def test_tool_layout_lists_servers_first() -> None:
    config = make_config({"notion": SERVERS["notion"], "github": SERVERS["github"]}, gateway={"layout": "tool"})
    async with gateway_client(config) as client:
        servers = text_of(await client.call_tool("listToolFiles", {}))
        tools = text_of(await client.call_tool("listToolFiles", {"server": "github"}))
        stub = text_of(await client.call_tool("readToolFile", {"fileName": "servers/github/issue_write.pyi"}))
    assert servers == "servers/github/  (2 tools)\nservers/notion/  (4 tools)"
    assert tools.splitlines()[1:] == [
        "  get_file_contents.pyi  # Get the contents of a file or directory from a GitHub repository",
        "  issue_write.pyi  # Create a new or update an existing issue in a GitHub repository",
    ]
    assert "def issue_write(method: " in stub


def _call(server: str, identifier: str, arguments: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={py_literal(v)}" for k, v in arguments.items())
    return f'try_call("{server}.{identifier}"{", " if args else ""}{args})'


async def test_every_real_tool_is_callable_by_its_identifier(catalog_url: str) -> None:
    """A call built from the stub's names (required arguments, smallest valid values) reaches the upstream."""
    lines = ["failed = []"]
    for server in data_servers():
        for tool in data_specs(server).values():
            names = {v: k for k, v in param_map(tool).items()}
            required = minimal(tool.input_schema, tool.input_schema) or {}
            arguments = {names[k]: v for k, v in required.items()}
            lines.append(f"r = {_call(server, tool.identifier, arguments)}")
            lines.append(f'if not r["ok"]:\n    failed.append(["{server}.{tool.identifier}", r["error"]])')
    lines.append("result = failed")
    async with key_client(catalog_url) as client:
        out = await client.call_tool("executeToolCode", {"code": "\n".join(lines)})
    assert text_of(out) == "result = []", text_of(out)


async def test_scripts_see_values_shaped_as_the_stub_says(catalog_url: str) -> None:
    code = """
edit = filesystem.edit_file(path="a.txt", edits=[{"oldText": "a", "newText": "b"}])
busy = google_calendar.get_freebusy(calendars=[{"id": "primary"}], timeMin="2026-11-23T00:00:00Z",
                                    timeMax="2026-11-24T00:00:00Z")
pages = parallel([("notion.API_move_page", {"page_id": "p", "parent": {"type": "workspace"}}),
                  ("github.issue_write", {"method": "create", "owner": "o", "repo": "r"})])
result = [type(edit["content"]), len(busy["items"]), [p["tool"] for p in pages]]
"""
    async with key_client(catalog_url) as client:
        stub = text_of(await client.call_tool("readToolFile", {"fileName": "filesystem"}))
        out = await client.call_tool("executeToolCode", {"code": code})
    assert "def edit_file(path: str, edits: list[Edit], dryRun: bool = False) -> EditFileResult:" in stub
    assert "class EditFileResult(TypedDict): content: str" in stub
    assert json.loads(text_of(out).removeprefix("result = ")) == [
        "string", 10, ["API-move-page", "issue_write"],
    ]  # fmt: skip
