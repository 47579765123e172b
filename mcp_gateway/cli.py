"""`mcp-gateway serve` and `mcp-gateway check`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio
import uvicorn

from .codemode import META_TOOLS
from .config import ConfigError, GatewayConfig, load_config
from .gateway import Gateway
from .logs import configure_logging
from .server import build_app, serve_stdio
from .tokens import tool_definition_tokens
from .upstream import Upstream


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return anyio.run(check, config)
    return serve(config, host=args.host, port=args.port, stdio=args.stdio)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="An MCP gateway with Code Mode.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="serve the gateway (streamable HTTP at /mcp, or stdio)")
    serve_p.add_argument("--host", help="address to bind (default: gateway.host, 127.0.0.1)")
    serve_p.add_argument("--port", type=int, help="port (default: gateway.port, 8080)")
    serve_p.add_argument("--stdio", action="store_true", help="serve over stdin/stdout instead of HTTP")
    check_p = sub.add_parser("check", help="validate the config, connect to every upstream, print a table")
    for p in (serve_p, check_p):
        p.add_argument("--config", "-c", required=True, help="gateway.toml, or a .mcp.json file")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def serve(config: GatewayConfig, *, host: str | None, port: int | None, stdio: bool) -> int:
    gw = Gateway(config)
    if stdio:
        anyio.run(serve_stdio, gw)
        return 0
    host = host or config.gateway.host
    port = config.gateway.port if port is None else port
    url = f"http://{_url_host(host)}:{port}/mcp"
    print(
        f"mcp-gateway serving {url}\n"
        f"connect Claude Code: claude mcp add --transport http {config.gateway.name} {url}",
        file=sys.stderr,
        flush=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}, reachable from other machines", file=sys.stderr)
    uvicorn.run(build_app(gw, host=host), host=host, port=port, log_level="warning", lifespan="on")
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def check(config: GatewayConfig) -> int:
    """Connect to every upstream at once, then print one row per server."""
    upstreams = [Upstream(name, cfg) for name, cfg in config.servers.items()]
    async with anyio.create_task_group() as tg:
        for up in upstreams:
            tg.start_soon(up.run)
        with anyio.move_on_after(config.gateway.startup_timeout_s):
            for up in upstreams:
                await up.wait_settled()
        rows = [_row(config, up) for up in upstreams]
        for up in upstreams:
            tg.start_soon(up.stop)
        tg.cancel_scope.deadline = anyio.current_time() + 10
    _print_table(["server", "transport", "mode", "status", "tools", "tokens"], rows)
    total = sum(tool_definition_tokens(up.tools, f"mcp__{config.gateway.name}__") for up in upstreams)
    meta = tool_definition_tokens(META_TOOLS)
    print(f"\nall tool definitions: {total} tokens per request; Code Mode's four meta-tools: {meta} tokens")
    failed = [up for up in upstreams if up.state not in ("ready", "disabled")]
    return 1 if failed else 0


def _row(config: GatewayConfig, up: Upstream) -> list[str]:
    tokens = tool_definition_tokens(up.tools, f"mcp__{config.gateway.name}__")
    return [up.name, up.config.kind, config.mode_of(up.config), up.status, str(len(up.tools)), str(tokens)]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
