"""A fixture upstream whose tool names, results and errors hold markup (for the dashboard's escaping).

Run: python markup_server.py
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

mcp = MCPServer("markup")


@mcp.tool(name="<script>alert(1)</script>")
def scripted(text: str) -> str:
    """<b>bold</b> description."""
    return text


@mcp.tool()
def explode(text: str) -> str:
    """Fail with markup in the error."""
    raise ToolError(f"<img src=x onerror=alert(2)> {text}")


if __name__ == "__main__":
    mcp.run("stdio")
