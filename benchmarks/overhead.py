"""Latency of one trivial tool call: directly, through the gateway in direct mode, and from a script.

Everything runs on 127.0.0.1: the fixture upstream (streamable HTTP) and the gateway are separate
processes; the SDK `Client` is the caller. Prints a markdown table; bounded by --calls.

    .venv/bin/python benchmarks/overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import anyio
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import fixture_server, gateway, timed  # noqa: E402

from mcp_gateway.codemode import META_TOOLS  # noqa: E402
from mcp_gateway.tokens import tool_definition_tokens  # noqa: E402

SCRIPT = "result = c.add(a=1, b=2)"



def row(label: str, ms: list[float], base: float) -> str:
    q = statistics.quantiles(ms, n=20)
    p50 = statistics.median(ms)
    return f"| {label} | {p50:.2f} | {q[18]:.2f} | {p50 / base:.2f}x |"


async def main(calls: int) -> None:
    async with fixture_server("math_server") as upstream, \
            gateway(f'[servers.d]\nurl = "{upstream}"\nmode = "direct"\n'
                    f'[servers.c]\nurl = "{upstream}"\nmode = "code"\n') as (gateway_url, _), \
            Client(upstream) as direct, Client(gateway_url) as gw:
        a = await timed(lambda: direct.call_tool("add", {"a": 1, "b": 2}), calls)
        b = await timed(lambda: gw.call_tool("d_add", {"a": 1, "b": 2}), calls)
        c = await timed(lambda: gw.call_tool("executeToolCode", {"code": SCRIPT}), calls)
    base = statistics.median(a)
    print(f"calls per path: {calls} (after 20 warm-up calls), Python {sys.version.split()[0]}\n")
    print("| path | p50 ms | p95 ms | p50 vs direct |\n|---|---|---|---|")
    print(row("(a) client -> upstream (no gateway)", a, base))
    print(row("(b) client -> gateway, direct mode", b, base))
    print(row("(c) client -> gateway, executeToolCode with one call", c, base))
    tokens = tool_definition_tokens(META_TOOLS, prefix="mcp__gw__")
    chars = {t.name: len(t.description or "") for t in META_TOOLS}
    print(f"\nfour meta-tool definitions: {tokens} cl100k tokens (anchor: ~1,580); description chars: {chars}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    anyio.run(main, parser.parse_args().calls)
