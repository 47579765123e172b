"""A PydanticAI agent using the gateway in Code Mode, over streamable HTTP or in the same process.

    make run                                                   # the demo gateway, http://127.0.0.1:8080/mcp
    python examples/frameworks/pydantic_ai_agent.py http://127.0.0.1:8080/mcp
    python examples/frameworks/pydantic_ai_agent.py --in-process   # the demo upstreams, no HTTP and no `make run`

Needs `pip install "pydantic-ai-slim[mcp]"` beside the gateway. The model is PydanticAI's own
`FunctionModel` playing a scripted model, so this runs offline: it lists the stub files, reads one,
runs one script across two upstreams and answers with the script's result. For a real model pass
e.g. `"openai:gpt-5"` to `Agent` instead; the toolset stays the same.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastmcp.client.transports import ClientTransport
from fastmcp.client.transports.base import TransportOptions
from mcp.shared.memory import create_client_server_memory_streams
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from mcp_gateway import Gateway, build_server, parse_config
from mcp_gateway.tokens import count_tokens

DEMO = Path(__file__).resolve().parents[1] / "demo"

# Open orders with a line the stock cannot cover: crosses the demo's `inventory` and `orders` upstreams.
SCRIPT = """
stock = {p["sku"]: p["stock"] for p in inventory.list_products()}
result = [o["id"] for o in orders.list_orders(status="open")
          if [l for l in o["lines"] if stock[l["sku"]] < l["quantity"]]]
"""


class ScriptedModel:
    """A `FunctionModel` function: listToolFiles, readToolFile(stub), executeToolCode(code), then the answer."""

    def __init__(self, stub: str, code: str) -> None:
        self.plan: list[tuple[str, dict[str, Any]]] = [
            ("listToolFiles", {}), ("readToolFile", {"fileName": stub}), ("executeToolCode", {"code": code})]
        self.tools_per_turn: list[list[dict[str, Any]]] = []  # the tool definitions PydanticAI handed over
        self.returns: list[ToolReturnPart] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.tools_per_turn.append([{"name": t.name, "description": t.description or "",
                                     "parameters": t.parameters_json_schema} for t in info.function_tools])
        self.returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if len(self.returns) < len(self.plan):
            name, args = self.plan[len(self.returns)]
            return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"call_{len(self.returns) + 1}")])
        return ModelResponse(parts=[TextPart("From the gateway: " + self.returns[-1].model_response_str())])


class GatewayTransport(ClientTransport):
    """The gateway in this process as a FastMCP transport for `MCPToolset`: memory streams, no network hop.

    The session starts the gateway (and its upstreams) and stops it when the toolset closes.
    """

    def __init__(self, gw: Gateway) -> None:
        self.server = build_server(gw)

    @contextlib.asynccontextmanager
    async def connect_session(self, *, transport_options: TransportOptions | None = None,
                              **session_kwargs: Any) -> AsyncIterator[Any]:
        session_class = (transport_options or TransportOptions()).session_class
        async with (create_client_server_memory_streams() as ((client_read, client_write), (read, write)),
                    anyio.create_task_group() as tg):
            tg.start_soon(lambda: self.server.run(read, write, self.server.create_initialization_options()))
            try:
                async with session_class(read_stream=client_read, write_stream=client_write,
                                         **session_kwargs) as session:
                    yield session
            finally:
                tg.cancel_scope.cancel()


def demo_gateway() -> Gateway:
    servers = {name: {"command": sys.executable, "args": [str(DEMO / f"{name}.py")]}
               for name in ("inventory", "orders")}
    return Gateway(parse_config({"gateway": {"state_dir": str(DEMO / ".state")}, "servers": servers}))


def definition_tokens(definitions: list[dict[str, Any]]) -> int:
    return count_tokens(json.dumps(definitions, ensure_ascii=False))


async def main(where: str) -> None:
    model = ScriptedModel("servers/orders.pyi", SCRIPT)
    toolset = MCPToolset(GatewayTransport(demo_gateway()) if where == "--in-process" else where)
    agent = Agent(FunctionModel(model), toolsets=[toolset])
    result = await agent.run("Which open orders cannot be filled from stock?")
    tools = model.tools_per_turn[0]
    print("tools:", ", ".join(t["name"] for t in tools))
    for part in model.returns:
        print(f"-> {part.tool_name}: {part.model_response_str().splitlines()[0]}")
    tokens, turns = definition_tokens(tools), len(model.tools_per_turn)
    print(f"per turn: {len(tools)} tool definitions, {tokens} tokens, {turns} turns")
    print("answer:", result.output)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/mcp")
