"""Agent frameworks use the gateway's Code Mode: PydanticAI, the OpenAI Agents SDK, LangChain.

Each framework is the real one from PyPI with its own MCP client, driven by a scripted model written
against the framework's own model interface (PydanticAI's `FunctionModel`, the Agents SDK's `Model`,
LangChain's `BaseChatModel`): list the stub files, read one stub, run one script across two upstreams,
answer with the script's result. The gateways are real `mcp-gateway serve` processes, on 127.0.0.1 or
launched by the framework over stdio. The scripted models are the examples' own
(`examples/frameworks/`), and each example also runs as a user would run it, against the demo upstreams.

Token figures: the tool definitions each framework hands its model per turn, counted (cl100k) as the
framework serialises them, for the four meta-tools and for the whole catalog (the same upstreams in
direct mode: 58 tools). Run with `-s` to see them.

LangChain (langchain-mcp-adapters needs `mcp<2`) runs from its own virtualenv, built with the pinned
versions below in `tests/interop/.venvs/` on first use (about 20 s with a warm pip cache) and reused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent as OpenAIAgent
from agents import Runner, set_tracing_disabled
from agents.mcp import MCPServerStdio, MCPServerStreamableHttp
from fastmcp.client.transports import StdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from mcp_gateway import Gateway, parse_config
from tests.interop.frameworks import (
    META_TOOLS,
    SCRIPT,
    SCRIPT_RESULT,
    STUB,
    demo_servers,
    fixture_servers,
    gateway_process,
    load_example,
    payload_tokens,
    run_example,
    stdio_config,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

LANGCHAIN_PINS = ["langchain-mcp-adapters==0.3.2", "langchain==1.5.2", "langchain-core==1.8.3",
                  "langgraph==1.2.24", "mcp==1.30.0"]
VENVS = Path(__file__).parent / ".venvs"
CATALOG_TOOLS = 10 + 3 + 45  # math, text, github
QUESTION = "How many words are in 'the quick brown fox', and what is that plus its characters?"

pydantic_ai_agent = load_example("pydantic_ai_agent")
openai_agents_agent = load_example("openai_agents_agent")
set_tracing_disabled(True)  # the Agents SDK would otherwise try to export traces to OpenAI


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def code_url() -> AsyncIterator[str]:
    async with gateway_process(fixture_servers()) as url:
        yield url


@pytest.fixture(scope="module")
async def direct_url() -> AsyncIterator[str]:
    """The same upstreams in direct mode: what a framework sends without Code Mode, the whole catalog."""
    async with gateway_process(fixture_servers(), default_mode="direct") as url:
        yield url


@pytest.fixture(scope="module")
async def demo_url() -> AsyncIterator[str]:
    async with gateway_process(demo_servers()) as url:
        yield url


def check_flow(tools_per_turn: list[list[str]], outputs: list[tuple[str, str]], answer: str) -> None:
    """Four model turns that each saw the four meta-tools; listing, stub, script result; the answer quotes it."""
    assert tools_per_turn == [META_TOOLS] * 4
    assert [name for name, _ in outputs] == ["listToolFiles", "readToolFile", "executeToolCode"]
    listing, stub, executed = (text for _, text in outputs)
    assert all(f"servers/{s}.pyi" in listing for s in ("math", "text", "github")), listing
    assert "def count(text: str) -> WordCount" in stub, stub
    assert "words: 4" in executed and SCRIPT_RESULT in executed, executed
    assert SCRIPT_RESULT in answer, answer


def report(framework: str, meta: int, catalog: int) -> None:
    print(f"\n{framework}: per turn {meta} tokens for the 4 meta-tools, {catalog} for the {CATALOG_TOOLS}-tool "
          f"catalog ({100 * (1 - meta / catalog):.1f}% less)")
    assert 0 < meta * 5 < catalog


# PydanticAI


async def run_pydantic_ai(toolset: MCPToolset[Any]) -> None:
    model = pydantic_ai_agent.ScriptedModel(STUB, SCRIPT)
    result = await Agent(FunctionModel(model), toolsets=[toolset]).run(QUESTION)
    check_flow([[t["name"] for t in turn] for turn in model.tools_per_turn],
               [(p.tool_name, p.model_response_str()) for p in model.returns], result.output)


async def test_pydantic_ai_over_http(code_url: str) -> None:
    await run_pydantic_ai(MCPToolset(code_url))


async def test_pydantic_ai_over_stdio() -> None:
    with stdio_config(fixture_servers()) as command:
        await run_pydantic_ai(MCPToolset(StdioTransport(command[0], command[1:]), init_timeout=60))


async def test_pydantic_ai_in_process(tmp_path: Path) -> None:
    """The example's `GatewayTransport`: the gateway embedded in the agent's process, no network hop."""
    gw = Gateway(parse_config({"gateway": {"state_dir": str(tmp_path)}, "servers": fixture_servers()}))
    await run_pydantic_ai(MCPToolset(pydantic_ai_agent.GatewayTransport(gw)))


async def test_pydantic_ai_tokens_per_turn(code_url: str, direct_url: str) -> None:
    async def definitions(url: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            seen[:] = [{"name": t.name, "description": t.description or "", "parameters": t.parameters_json_schema}
                       for t in info.function_tools]
            return ModelResponse(parts=[TextPart("nothing to do")])

        await Agent(FunctionModel(answer), toolsets=[MCPToolset(url)]).run(QUESTION)
        return seen

    meta, catalog = await definitions(code_url), await definitions(direct_url)
    assert [t["name"] for t in meta] == META_TOOLS and len(catalog) == CATALOG_TOOLS
    report("PydanticAI", payload_tokens(meta), payload_tokens(catalog))


# OpenAI Agents SDK


async def run_openai_agents(server: Any) -> openai_agents_agent.ScriptedModel:
    model = openai_agents_agent.ScriptedModel(STUB, SCRIPT)
    async with server:
        agent = OpenAIAgent(name="gw", instructions="Use the gateway's tools.", model=model, mcp_servers=[server])
        result = await Runner.run(agent, QUESTION)
    check_flow([[t["name"] for t in turn] for turn in model.tools_per_turn], model.outputs, str(result.final_output))
    return model


async def test_openai_agents_over_http(code_url: str) -> None:
    await run_openai_agents(MCPServerStreamableHttp({"url": code_url}, name="gw", cache_tools_list=True))


async def test_openai_agents_over_stdio() -> None:
    with stdio_config(fixture_servers()) as command:
        server = MCPServerStdio({"command": command[0], "args": command[1:]}, name="gw",
                                client_session_timeout_seconds=60)
        await run_openai_agents(server)


async def test_openai_agents_tokens_per_turn(code_url: str, direct_url: str) -> None:
    meta = (await run_openai_agents(MCPServerStreamableHttp({"url": code_url}, name="gw"))).tools_per_turn[0]
    async with MCPServerStreamableHttp({"url": direct_url}, name="gw", client_session_timeout_seconds=30) as server:
        model = openai_agents_agent.ScriptedModel(STUB, SCRIPT)
        model.plan = [("math_add", {"a": 1, "b": 2})]  # one direct-mode call, then the answer
        agent = OpenAIAgent(name="gw", instructions="Use the gateway's tools.", model=model, mcp_servers=[server])
        result = await Runner.run(agent, QUESTION)
    catalog = model.tools_per_turn[0]
    assert model.outputs[0][0] == "math_add" and "3" in str(result.final_output)
    assert len(catalog) == CATALOG_TOOLS and all(t["type"] == "function" for t in catalog)
    report("OpenAI Agents SDK", payload_tokens(meta), payload_tokens(catalog))


# LangChain, from its own virtualenv


@pytest.fixture(scope="module")
def langchain_python() -> Path:
    """A virtualenv with LANGCHAIN_PINS (its own `mcp<2`), built once and reused while the pins stay the same."""
    venv = VENVS / ("langchain-" + hashlib.sha256(" ".join(LANGCHAIN_PINS).encode()).hexdigest()[:10])
    python, done = venv / "bin" / "python", venv / ".installed"
    if not done.exists():
        VENVS.mkdir(exist_ok=True)
        (VENVS / ".gitignore").write_text("*\n")
        for step in ([sys.executable, "-m", "venv", "--clear", str(venv)],
                     [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *LANGCHAIN_PINS]):
            run = subprocess.run(step, capture_output=True, text=True, timeout=200)
            assert run.returncode == 0, f"building the LangChain virtualenv failed: {run.stderr[-2000:]}"
        done.write_text("\n".join(LANGCHAIN_PINS) + "\n")
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    assert all(pin in frozen.splitlines() for pin in LANGCHAIN_PINS), frozen
    return python


async def test_langchain_from_its_own_virtualenv(langchain_python: Path, demo_url: str, direct_url: str,
                                                 tmp_path: Path) -> None:
    out = run_example(langchain_python, "langchain_agent", demo_url, "--dump", str(tmp_path / "meta.json"))
    assert "tools: " + ", ".join(META_TOOLS) in out
    assert "-> listToolFiles: servers/inventory.pyi  (3 tools)" in out
    assert "-> readToolFile: # servers/orders.pyi" in out
    assert '-> executeToolCode: result = ["o-2"]' in out
    assert 'answer: From the gateway: result = ["o-2"]' in out
    turns = json.loads((tmp_path / "meta.json").read_text())
    assert [[t["function"]["name"] for t in turn] for turn in turns] == [META_TOOLS] * 4

    # the whole catalog as LangChain binds it: the adapters list the direct-mode gateway's 58 tools
    listing = (
        "import asyncio, json, sys\n"
        "from langchain_core.utils.function_calling import convert_to_openai_tool\n"
        "from langchain_mcp_adapters.client import MultiServerMCPClient\n"
        "client = MultiServerMCPClient({'gw': {'transport': 'streamable_http', 'url': sys.argv[1]}})\n"
        "print(json.dumps([convert_to_openai_tool(t) for t in asyncio.run(client.get_tools())]))\n"
    )
    done = subprocess.run([str(langchain_python), "-c", listing, direct_url], capture_output=True, text=True,
                          timeout=120, check=True)
    catalog = json.loads(done.stdout)
    assert len(catalog) == CATALOG_TOOLS
    report("LangChain", payload_tokens(turns[0]), payload_tokens(catalog))


# The examples as a user runs them, against the demo upstreams


@pytest.mark.parametrize("name", ["pydantic_ai_agent", "openai_agents_agent", "pydantic_ai_agent --in-process"])
async def test_example_runs(name: str, demo_url: str) -> None:
    example, *options = name.split()
    out = run_example(sys.executable, example, *(options or [demo_url]))
    assert "tools: " + ", ".join(META_TOOLS) in out
    assert '-> executeToolCode: result = ["o-2"]' in out
    assert "per turn: 4 tool definitions," in out and ", 4 turns" in out
    assert 'answer: From the gateway: result = ["o-2"]' in out
