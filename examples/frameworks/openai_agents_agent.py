"""An OpenAI Agents SDK agent using the gateway in Code Mode, over streamable HTTP.

    make run                                                      # the demo gateway, http://127.0.0.1:8080/mcp
    python examples/frameworks/openai_agents_agent.py http://127.0.0.1:8080/mcp

Needs `pip install openai-agents` beside the gateway. The model is a scripted implementation of the
SDK's `Model` interface, so this runs offline: it lists the stub files, reads one, runs one script
across two upstreams and answers with the script's result. For a real model leave `model=` out of
`Agent` (or name one, e.g. `model="gpt-5"`); the MCP server stays the same.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
from agents import Agent, Model, ModelResponse, Runner, Usage, set_tracing_disabled
from agents.mcp import MCPServerStreamableHttp
from agents.models.openai_responses import Converter
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from mcp_gateway.tokens import count_tokens

# Open orders with a line the stock cannot cover: crosses the demo's `inventory` and `orders` upstreams.
SCRIPT = """
stock = {p["sku"]: p["stock"] for p in inventory.list_products()}
result = [o["id"] for o in orders.list_orders(status="open")
          if [l for l in o["lines"] if stock[l["sku"]] < l["quantity"]]]
"""


def output_text(output: Any) -> str:
    """A `function_call_output` item's output: a string, or a list of content parts."""
    if isinstance(output, str):
        return output
    return "\n".join(str(part.get("text", "")) for part in output if isinstance(part, dict))


class ScriptedModel(Model):
    """The SDK's `Model` interface, scripted: listToolFiles, readToolFile(stub), executeToolCode(code), answer."""

    def __init__(self, stub: str, code: str) -> None:
        self.plan: list[tuple[str, dict[str, Any]]] = [
            ("listToolFiles", {}), ("readToolFile", {"fileName": stub}), ("executeToolCode", {"code": code})]
        self.tools_per_turn: list[list[Any]] = []  # what the SDK would send to the Responses API, per turn
        self.outputs: list[tuple[str, str]] = []  # (tool name, output) as the SDK fed them back

    async def get_response(self, system_instructions: str | None, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, **_: Any) -> ModelResponse:
        self.tools_per_turn.append(list(Converter.convert_tools(tools, handoffs).tools))
        items = input if isinstance(input, list) else []
        names = {i["call_id"]: i["name"] for i in items if isinstance(i, dict) and i.get("type") == "function_call"}
        self.outputs = [(names.get(i["call_id"], "?"), output_text(i["output"]))
                        for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        item: Any
        if len(self.outputs) < len(self.plan):
            name, args = self.plan[len(self.outputs)]
            call_id = f"call_{len(self.outputs) + 1}"
            item = ResponseFunctionToolCall(type="function_call", id=call_id, call_id=call_id, name=name,
                                            arguments=json.dumps(args))
        else:
            text = ResponseOutputText(type="output_text", text="From the gateway: " + self.outputs[-1][1],
                                      annotations=[])
            item = ResponseOutputMessage(type="message", id="msg_1", role="assistant", status="completed",
                                         content=[text])
        return ModelResponse(output=[item], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this scripted model does not stream")


async def main(url: str) -> None:
    set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI
    model = ScriptedModel("servers/orders.pyi", SCRIPT)
    async with MCPServerStreamableHttp({"url": url}, name="gw", cache_tools_list=True) as gateway:
        agent = Agent(name="orders", instructions="Answer from the gateway's tools.", model=model,
                      mcp_servers=[gateway])
        result = await Runner.run(agent, "Which open orders cannot be filled from stock?")
    tools = model.tools_per_turn[0]
    print("tools:", ", ".join(t["name"] for t in tools))
    for name, output in model.outputs:
        print(f"-> {name}: {output.splitlines()[0]}")
    tokens = count_tokens(json.dumps(tools, ensure_ascii=False))
    print(f"per turn: {len(tools)} tool definitions, {tokens} tokens, {len(model.tools_per_turn)} turns")
    print("answer:", result.final_output)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/mcp")
