"""Embed the gateway in a Python program: no HTTP, the demo upstreams, the SDK `Client` in-process.

    python examples/embed_inprocess.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp import Client

from mcp_gateway import Gateway, build_server, call, list_tools, parse_config

DEMO = Path(__file__).parent / "demo"


def demo_config() -> dict[str, object]:
    python = sys.executable
    return {
        "gateway": {"state_dir": str(DEMO / ".state")},
        "servers": {
            "inventory": {"command": python, "args": [str(DEMO / "inventory.py")]},
            "orders": {"command": python, "args": [str(DEMO / "orders.py")]},
        },
    }


SCRIPT = """
stock = {p["sku"]: p["stock"] for p in inventory.list_products()}
result = [o["id"] for o in orders.list_orders(status="open")
          if [l for l in o["lines"] if stock[l["sku"]] < l["quantity"]]]
"""


async def main() -> None:
    gw = Gateway(parse_config(demo_config()))
    # 1. Through the SDK's Client, connected in-process (the client starts and stops the gateway).
    async with Client(build_server(gw)) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        reply = await client.call_tool("executeToolCode", {"code": SCRIPT})
        print("tools:", ", ".join(names))
        print("client:", reply.content[0].text)  # type: ignore[union-attr]
    # 2. Or call the gateway's functions directly.
    async with Gateway(parse_config(demo_config())) as gw2:
        print("direct api tools:", len(list_tools(gw2)))
        result = await call(gw2, "readToolFile", {"fileName": "servers/orders.pyi"})
        print("stub lines:", len(result.content[0].text.splitlines()))  # type: ignore[union-attr]


if __name__ == "__main__":
    anyio.run(main)
