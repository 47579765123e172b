"""A fixture upstream that fails its first start and serves from the second (for the reconnect history).

Run: python flaky_server.py MARKER. Without the MARKER file it creates it, says why on stderr and
exits 1 (before any MCP message, so the gateway records a failed connection and schedules a
reconnect); with it, it serves one tool over stdio.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("flaky")


@mcp.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    marker = Path(sys.argv[1])
    if not marker.exists():
        marker.write_text("started once\n")
        print("flaky: <b>first start</b> fails on purpose", file=sys.stderr, flush=True)
        raise SystemExit(1)
    mcp.run("stdio")
