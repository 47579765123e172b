"""Demo upstream: customer orders referring to inventory SKUs (stdio MCP server built with the SDK)."""

from __future__ import annotations

from typing import Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

mcp = MCPServer("orders", instructions="Customer orders.")


class Line(BaseModel):
    sku: str
    quantity: int


class Order(BaseModel):
    id: str
    customer: str
    status: Literal["open", "shipped", "cancelled"]
    lines: list[Line]


ORDERS = [
    Order(id="o-1", customer="Ada", status="open", lines=[Line(sku="T-200", quantity=2)]),
    Order(
        id="o-2", customer="Grace", status="open", lines=[Line(sku="G-310", quantity=1), Line(sku="K-510", quantity=1)]
    ),
    Order(id="o-3", customer="Linus", status="shipped", lines=[Line(sku="T-100", quantity=5)]),
    Order(id="o-4", customer="Barbara", status="open", lines=[Line(sku="K-620", quantity=2)]),
]


@mcp.tool()
def list_orders(status: Literal["open", "shipped", "cancelled"] | None = None) -> list[Order]:
    """List orders, optionally only those with one status."""
    return [o for o in ORDERS if status is None or o.status == status]


@mcp.tool()
def get_order(order_id: str) -> Order | None:
    """One order by id, or null."""
    return next((o for o in ORDERS if o.id == order_id), None)


if __name__ == "__main__":
    mcp.run("stdio")
