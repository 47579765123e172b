"""Demo upstream in direct mode: two small tools, passed through as `clock_now` and `clock_add_days`."""

from __future__ import annotations

import datetime as dt

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("clock")


@mcp.tool()
def now() -> str:
    """The current UTC time, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@mcp.tool()
def add_days(date: str, days: int) -> str:
    """The ISO date `days` after `date` (YYYY-MM-DD)."""
    return (dt.date.fromisoformat(date) + dt.timedelta(days=days)).isoformat()


if __name__ == "__main__":
    mcp.run("stdio")
