"""Demo upstream: a small warehouse inventory (stdio MCP server built with the SDK)."""

from __future__ import annotations

from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

mcp = MCPServer("inventory", instructions="Warehouse stock levels and product data.")


class Product(BaseModel):
    sku: str
    name: str
    category: Literal["tools", "garden", "kitchen"]
    stock: int
    reorder_level: int
    unit_price: float


PRODUCTS = [
    Product(sku="T-100", name="Claw hammer", category="tools", stock=42, reorder_level=10, unit_price=14.5),
    Product(sku="T-200", name="Cordless drill", category="tools", stock=3, reorder_level=5, unit_price=89.0),
    Product(sku="G-310", name="Garden hose 25 m", category="garden", stock=0, reorder_level=8, unit_price=32.0),
    Product(sku="G-420", name="Pruning shears", category="garden", stock=17, reorder_level=6, unit_price=19.9),
    Product(sku="K-510", name="Chef's knife", category="kitchen", stock=6, reorder_level=6, unit_price=54.0),
    Product(sku="K-620", name="Cast iron pan", category="kitchen", stock=25, reorder_level=4, unit_price=39.0),
]


@mcp.tool()
def list_products(category: Literal["tools", "garden", "kitchen"] | None = None) -> list[Product]:
    """List products, optionally of one category."""
    return [p for p in PRODUCTS if category is None or p.category == category]


@mcp.tool()
def get_product(sku: str) -> Product:
    """One product by SKU."""
    for p in PRODUCTS:
        if p.sku == sku:
            return p
    raise ToolError(f"no product with SKU {sku!r}")


@mcp.tool()
def adjust_stock(sku: str, delta: int) -> Product:
    """Add (or with a negative delta remove) units of a product."""
    product = get_product(sku)
    if product.stock + delta < 0:
        raise ToolError(f"only {product.stock} units of {sku} in stock")
    product.stock += delta
    return product


if __name__ == "__main__":
    mcp.run("stdio")
