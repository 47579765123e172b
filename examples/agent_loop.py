"""An agent-framework style loop: the four meta-tools handed to a model adapter.

The "model" here is scripted (it replays fixed decisions) so the example runs offline; swap
`ScriptedModel` for an adapter around a real model API. The loop is what a framework does:
send the tool definitions, run the tool calls the model asks for, feed results back.

    python examples/agent_loop.py
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anyio
from embed_inprocess import demo_config

from mcp_gateway import Gateway, call, list_tools, parse_config


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]


class ScriptedModel:
    """Stands in for a model: reads the listing, one stub, then writes one script."""

    def __init__(self) -> None:
        self.turn = 0

    def respond(self, tools: list[dict[str, Any]], transcript: list[str]) -> ToolCall | str:
        self.turn += 1
        plan: list[ToolCall | str] = [
            ToolCall("listToolFiles", {}),
            ToolCall("readToolFile", {"fileName": "servers/inventory.pyi"}),
            ToolCall("executeToolCode", {"code": (
                'low = [p["sku"] for p in inventory.list_products() if p["stock"] <= p["reorder_level"]]\n'
                "result = sorted(low)"
            )}),
        ]
        if self.turn <= len(plan):
            return plan[self.turn - 1]
        return "Reorder these SKUs: " + transcript[-1].removeprefix("result = ")


async def main() -> None:
    model = ScriptedModel()
    transcript: list[str] = []
    async with Gateway(parse_config(demo_config())) as gw:
        tools = [t.model_dump(by_alias=True, exclude_none=True) for t in list_tools(gw)]
        print(f"tool definitions sent each turn: {len(json.dumps(tools))} bytes")
        for _ in range(10):
            step = model.respond(tools, transcript)
            if isinstance(step, str):
                print("answer:", step)
                return
            result = await call(gw, step.name, step.arguments)
            text = "\n".join(getattr(b, "text", "") for b in result.content)
            transcript.append(text)
            print(f"-> {step.name}: {text.splitlines()[0] if text else ''}")


if __name__ == "__main__":
    anyio.run(main)
