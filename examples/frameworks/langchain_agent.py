"""A LangChain agent (`create_agent`) using the gateway in Code Mode through langchain-mcp-adapters.

langchain-mcp-adapters 0.3.2 requires `mcp<2` and the gateway `mcp>=2.3`, so LangChain runs in a
virtualenv of its own and reaches the gateway over streamable HTTP:

    python3 -m venv .venv-langchain
    .venv-langchain/bin/pip install langchain-mcp-adapters==0.3.2 langchain==1.5.2 langchain-core==1.8.3 mcp==1.30.0
    make run                                                        # the demo gateway, http://127.0.0.1:8080/mcp
    .venv-langchain/bin/python examples/frameworks/langchain_agent.py http://127.0.0.1:8080/mcp

The chat model is scripted (a `BaseChatModel` subclass) so this runs offline: it lists the stub files,
reads one, runs one script across two upstreams and answers with the script's result. For a real
model pass e.g. `ChatOpenAI(model="gpt-5")` to `create_agent`. `--dump FILE` writes the tool
definitions LangChain bound to the model on each turn (JSON), to count their tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_mcp_adapters.client import MultiServerMCPClient
from pydantic import Field

# Open orders with a line the stock cannot cover: crosses the demo's `inventory` and `orders` upstreams.
SCRIPT = """
stock = {p["sku"]: p["stock"] for p in inventory.list_products()}
result = [o["id"] for o in orders.list_orders(status="open")
          if [l for l in o["lines"] if stock[l["sku"]] < l["quantity"]]]
"""


def text_of(message: ToolMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "\n".join(str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in message.content)


class ScriptedChatModel(BaseChatModel):
    """listToolFiles, readToolFile(stub), executeToolCode(code), then an answer quoting the script's result."""

    plan: list[tuple[str, dict[str, Any]]]
    tools_per_turn: list[list[dict[str, Any]]] = Field(default_factory=list)  # what LangChain bound, per turn
    outputs: list[tuple[str, str]] = Field(default_factory=list)  # (tool name, output) as fed back

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.tools_per_turn.append(kwargs.get("tools", []))
        self.outputs = [(m.name or "?", text_of(m)) for m in messages if isinstance(m, ToolMessage)]
        if len(self.outputs) < len(self.plan):
            name, args = self.plan[len(self.outputs)]
            call = {"name": name, "args": args, "id": f"call_{len(self.outputs) + 1}"}
            reply = AIMessage(content="", tool_calls=[call])
        else:
            reply = AIMessage(content="From the gateway: " + self.outputs[-1][1])
        return ChatResult(generations=[ChatGeneration(message=reply)])


async def main(url: str, dump: Path | None) -> None:
    client = MultiServerMCPClient({"gw": {"transport": "streamable_http", "url": url}})
    tools = await client.get_tools()
    model = ScriptedChatModel(plan=[("listToolFiles", {}), ("readToolFile", {"fileName": "servers/orders.pyi"}),
                                    ("executeToolCode", {"code": SCRIPT})])
    agent = create_agent(model, tools, system_prompt="Answer from the gateway's tools.")
    state = await agent.ainvoke({"messages": [("user", "Which open orders cannot be filled from stock?")]})
    print("tools:", ", ".join(t.name for t in tools))
    for name, output in model.outputs:
        print(f"-> {name}: {output.splitlines()[0]}")
    sent = model.tools_per_turn[0]
    print(f"per turn: {len(sent)} tool definitions, {len(json.dumps(sent))} bytes, {len(model.tools_per_turn)} turns")
    print("answer:", state["messages"][-1].content)
    if dump is not None:
        dump.write_text(json.dumps(model.tools_per_turn))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080/mcp")
    parser.add_argument("--dump", type=Path, help="write the tool definitions bound on each turn (JSON)")
    options = parser.parse_args()
    asyncio.run(main(options.url, options.dump))
