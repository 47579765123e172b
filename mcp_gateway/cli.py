"""`mcp-gateway serve` and `mcp-gateway check`."""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path

import anyio

from ._version import __version__
from .auth_commands import add_auth_parser, auth_command
from .clients import (
    Duplicate,
    Listing,
    by_precedence,
    client_listings,
    describe,
    display,
    duplicates,
    move,
    other_projects,
    read_json_listings,
    served_in_file,
)
from .codemode import META_TOOLS
from .config import LOOPBACK_HOSTS, ConfigError, GatewayConfig, GatewaySettings
from .config_files import load_config, load_gateway_settings
from .gateway import Gateway
from .listen import ListenError, bind, bound_port
from .logs import configure_logging
from .naming import client_prefix
from .onboarding import connect_instructions, find_mcp_servers, render_config
from .reload import watch_config
from .resilience import Resilience
from .server import serve_http, serve_stdio
from .storage import StorageUnavailable
from .store_commands import keys_command, logs_command, migrate_command, print_table
from .tokens import tool_definition_tokens
from .upstream import Upstream
from .upstream_client import NobodyToAsk


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        code = _run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        return init_command(args)
    try:
        if args.command == "connect":
            return connect_command(load_gateway_settings(args.config), args)
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        _warn_duplicates(config, Path(args.config))
        return anyio.run(check, config)
    if args.command == "keys":
        return keys_command(config, args)
    if args.command == "auth":
        return auth_command(config, args)
    if args.command == "logs":
        return logs_command(config, args)
    if args.command == "migrate":
        return migrate_command(config, args)

    return serve(config, Path(args.config), host=args.host, port=args.port, stdio=args.stdio,
                 allow_open=args.allow_open)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="An MCP gateway with Code Mode.")
    parser.add_argument("--version", action="version", version=f"mcp-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="serve the gateway (streamable HTTP at /mcp, or stdio)")
    serve_p.add_argument("--host", help="address to bind (default: gateway.host, 127.0.0.1)")
    serve_p.add_argument("--port", type=_port, help="port (default: gateway.port, 8080; 0: any free port)")
    serve_p.add_argument("--stdio", action="store_true", help="serve over stdin/stdout instead of HTTP")
    serve_p.add_argument("--allow-open", action="store_true",
                         help="serve a non-loopback address even though no API keys exist (not recommended)")
    check_p = sub.add_parser("check", help="validate the config, connect to every upstream, print a table")
    keys_p = sub.add_parser("keys", help="manage API keys in the store (the state directory, or [storage] url)")
    keys_sub = keys_p.add_subparsers(dest="keys_command", required=True)
    create_p = keys_sub.add_parser("create", help="create a key and print it once")
    create_p.add_argument("name")
    create_p.add_argument("--team", help="a team from [teams]")
    create_p.add_argument("--groups", nargs="*", default=[], help="extra groups from [groups]")
    create_p.add_argument("--admin", action="store_true", help="may read /metrics and the full /healthz")
    keys_sub.add_parser("list", help="list keys (never their secrets)")
    revoke_p = keys_sub.add_parser("revoke", help="revoke a key; takes effect on the next request")
    revoke_p.add_argument("name")
    logs_p = sub.add_parser("logs", help="query the audit log")
    logs_p.add_argument("--key", help="only calls made with this key")
    logs_p.add_argument("--tool", help="only calls of this tool")
    logs_p.add_argument("--since", help="only calls in this past window: 30s, 15m, 1h, 7d")
    logs_p.add_argument("--limit", type=int, default=100)
    logs_p.add_argument("--json", action="store_true", help="one JSON object per line")
    migrate_p = sub.add_parser("migrate", help="bring the store's schema up to date (serve also does, at start)")
    init_p = sub.add_parser("init", help="write a starter gateway.toml, importing the MCP servers you already use")
    init_p.add_argument("--output", "-o", default="gateway.toml")
    init_p.add_argument("--import", dest="sources", action="append", type=Path,
                        help="a .mcp.json or ~/.claude.json to import (default: ./.mcp.json, and from "
                             "~/.claude.json the user scope and this folder's project)")
    init_p.add_argument("--all-projects", action="store_true",
                        help="also import the servers of every other project in ~/.claude.json")
    init_p.add_argument("--no-import", action="store_true", help="write a config with no servers")
    init_p.add_argument("--force", action="store_true", help="overwrite an existing file")
    connect_p = sub.add_parser("connect", help="print (or run) what connects a client to this gateway")
    connect_p.add_argument("client", choices=["claude", "codex", "json"])
    connect_p.add_argument("--url", help="gateway URL (default: from the config's host and port)")
    connect_p.add_argument("--key", help="API key to send (default: none)")
    connect_p.add_argument("--run", action="store_true", help="run the `claude mcp add` command instead of printing it")
    connect_p.add_argument("--move", action="store_true",
                           help="remove the servers the gateway serves from the client's config (backup first)")
    auth_parsers = add_auth_parser(sub)
    for p in (serve_p, check_p, logs_p, migrate_p, connect_p, *keys_sub.choices.values(), *auth_parsers):
        p.add_argument("--config", "-c", required=p is not connect_p, default="gateway.toml",
                       help="gateway.toml, or a .mcp.json file")
    for p in (serve_p, check_p, logs_p, migrate_p, connect_p, init_p, *keys_sub.choices.values(), *auth_parsers):
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def init_command(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    user = Path.home() / ".claude.json"
    sources = [] if args.no_import else (args.sources or [p for p in (user, Path(".mcp.json")) if p.is_file()])
    listings: list[Listing] = []
    try:
        for path in sources:
            if not path.is_file():
                raise OSError(f"{path}: no such file")
            listings += read_json_listings(path, cwd=Path.cwd(), all_projects=args.all_projects)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read MCP servers: {exc}", file=sys.stderr)
        return 2
    if not args.sources:
        listings = by_precedence(listings)
    settings = GatewaySettings()
    found = find_mcp_servers(listings, gateway_name=settings.name, port=settings.port)
    out.write_text(render_config(found.servers, name=settings.name, port=settings.port), encoding="utf-8")
    for note in found.notes:
        print(note, file=sys.stderr)
    projects, count = other_projects(user, cwd=Path.cwd()) if user in sources and not args.all_projects else (0, 0)
    if projects:
        print(f"not imported: {count} server(s) of {projects} other project(s) in {display(user)} "
              "(--all-projects imports them)", file=sys.stderr)
    names = ", ".join(found.servers) or "none (add [servers.<name>] tables)"
    print(f"wrote {out}; servers: {names}\nnext: mcp-gateway check --config {out}, then serve it and "
          "`mcp-gateway connect claude --move`", file=sys.stderr)
    return 0


def connect_command(settings: GatewaySettings, args: argparse.Namespace) -> int:
    url = args.url or f"http://{_url_host(settings.host)}:{settings.port}/mcp"
    key = args.key
    if key is None and not settings.anonymous:  # a gateway that needs keys: the line must carry one
        key = "<your key>"
        print("note: this gateway needs an API key: pass --key mgw_... (an admin creates one with "
              "`mcp-gateway keys create <name> --groups <group>`)", file=sys.stderr)
    text = connect_instructions(args.client, url, settings.name, key)
    config = Path(args.config)
    dups = duplicates(client_listings(args.client, Path.cwd(), Path.home()), served_in_file(config), config=config)
    if dups and args.move:
        try:
            done = move(dups)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("moved behind the gateway:\n" + "\n".join(f"  {line}" for line in done), file=sys.stderr)
    elif dups:
        print(f"these servers are also served by the gateway ({display(config)}), so the model would see their "
              "tools twice:\n" + "\n".join(f"  {line}" for line in describe(dups))
              + "\n--move removes them from these files (each backed up first as <file>.bak)", file=sys.stderr)
    elif args.move:
        print(f"nothing to move: no {args.client} config lists a server {display(config)} serves", file=sys.stderr)
    if not args.run:
        print(text)
        return 0
    if args.client != "claude" or shutil.which("claude") is None:
        print("error: --run needs the claude command on PATH; run this instead:\n" + text, file=sys.stderr)
        return 2
    return subprocess.run(shlex.split(text), check=False).returncode


def serve(config: GatewayConfig, config_path: Path, *, host: str | None, port: int | None, stdio: bool,
          allow_open: bool) -> int:
    host = host or config.gateway.host
    port = config.gateway.port if port is None else port
    gw = Gateway(config.model_copy(update={"gateway": config.gateway.model_copy(update={"port": port})}))
    gc.freeze()  # what is loaded by now lives for good: keep it out of every garbage collection's scan
    if stdio:
        anyio.run(_watching, config_path, gw, serve_stdio(gw))
        return 0
    return anyio.run(_serve_http, gw, config_path, host, port, allow_open)


async def _serve_http(gw: Gateway, config_path: Path, host: str, port: int, allow_open: bool) -> int:
    config = gw.config
    try:
        is_open = await gw.keys.refresh()
    except StorageUnavailable as exc:
        is_open = False
        print(f"warning: the store is unavailable ({exc}): every request is refused until it answers",
              file=sys.stderr)
    anonymous = is_open and config.gateway.anonymous
    if anonymous and host not in LOOPBACK_HOSTS and not (allow_open or config.gateway.allow_open):
        print(f"error: refusing to serve {host} without API keys: anyone who can reach it could call every "
              "tool. Add [keys] or `mcp-gateway keys create`, or pass --allow-open.", file=sys.stderr)
        return 2
    try:
        sockets = bind(host, port)  # before anything is announced or started
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if anonymous:
        print("note: no API keys exist and gateway.anonymous is on, so every tool is open to any local client",
              file=sys.stderr)
    elif is_open:
        print("warning: no API keys exist, so every HTTP request gets 401: create one with "
              "`mcp-gateway keys create <name> --groups <group>`, or set `anonymous = true` under [gateway] "
              "for a gateway only you use on this machine", file=sys.stderr)
    url = f"http://{_url_host(host)}:{bound_port(sockets)}/mcp"
    key = None if anonymous or config.sign_in is not None else "<your key>"
    if config.sign_in is not None:
        print(f"callers sign in with {config.sign_in.issuer} (their MCP client opens its login page), "
              "or send an API key", file=sys.stderr)
    line = connect_instructions("claude", url, config.gateway.name, key)
    print(f"mcp-gateway serving {url}\nconnect Claude Code: {line}", file=sys.stderr, flush=True)
    if host not in LOOPBACK_HOSTS:
        print(f"warning: listening on {host}, reachable from other machines", file=sys.stderr)
    _warn_duplicates(config, config_path)
    await _watching(config_path, gw, serve_http(gw, host, port, sockets))
    return 0


async def _watching(path: Path, gw: Gateway, serving: Awaitable[None]) -> None:
    """Serve while the config file is watched for access changes (`reload.py`)."""
    async with anyio.create_task_group() as tg:
        if path.suffix != ".json":  # a .mcp.json has no access tables to reload
            tg.start_soon(watch_config, gw, path)
        await serving
        tg.cancel_scope.cancel()


def _warn_duplicates(config: GatewayConfig, path: Path) -> None:
    """Warn about client configs that still list servers this gateway serves."""
    served = {n: s.model_dump() for n, s in config.servers.items() if s.enabled}
    for client in ("claude", "codex"):
        dups: list[Duplicate] = duplicates(client_listings(client, Path.cwd(), Path.home()), served, config=path)
        if dups:
            print("warning: the model sees these servers' tools twice, from the gateway and from the client:\n"
                  + "\n".join(f"  {line}" for line in describe(dups))
                  + f"\n  `mcp-gateway connect {client} --move --config {display(path)}` removes them from the "
                  "client", file=sys.stderr)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {text!r}")
    return int(text)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def check(config: GatewayConfig) -> int:
    """Connect to every upstream at once, then print one row per server.

    Each session declares what `serve`'s do (sampling, elicitation), so it is listed the same tools."""
    once = Resilience.of(config.gateway, once=True)
    hooks = NobodyToAsk("mcp-gateway check")
    upstreams = [Upstream(name, cfg, once, hooks) for name, cfg in config.servers.items()]
    async with anyio.create_task_group() as tg:
        for up in upstreams:
            tg.start_soon(up.run)
        with anyio.move_on_after(config.gateway.startup_timeout_s):
            for up in upstreams:
                await up.wait_settled()
        rows = [_row(config, up) for up in upstreams]
        summary = _savings(config, upstreams)
        failed = [up.name for up in upstreams if up.state not in ("ready", "disabled")]
        for up in upstreams:
            tg.start_soon(up.stop)
        tg.cancel_scope.deadline = anyio.current_time() + 10
    print_table(["server", "transport", "mode", "status", "tools", "tokens"], rows)
    print(f"\n{summary}")
    if failed:
        print(f"not ready: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _savings(config: GatewayConfig, upstreams: list[Upstream]) -> str:
    """Tool-definition tokens per request: every tool sent (classic) against what this config sends."""
    prefix = client_prefix(config.gateway.name)
    classic = sum(tool_definition_tokens(up.tools, prefix) for up in upstreams)
    direct = sum(tool_definition_tokens(up.tools, prefix) for up in upstreams if config.mode_of(up.config) == "direct")
    uses_code = any(config.mode_of(s) == "code" for s in config.servers.values())
    sent = direct + (tool_definition_tokens(META_TOOLS, prefix) if uses_code else 0)
    text = (f"tool definitions per request: {classic} tokens with every tool listed; {sent} with this config "
            f"(Code Mode's four meta-tools plus the direct-mode tools)")
    if classic and sent < classic:
        return f"{text}, {100 * (classic - sent) / classic:.0f}% less"
    if not any(up.state == "ready" for up in upstreams):
        return f"{text} (no upstream is ready, so there is nothing to compare)"
    if uses_code:
        return f"{text}; Code Mode costs more than it saves here: consider mode = \"direct\" for small servers"
    return text


def _row(config: GatewayConfig, up: Upstream) -> list[str]:
    tokens = tool_definition_tokens(up.tools, client_prefix(config.gateway.name))
    return [up.name, up.config.kind, config.mode_of(up.config), up.status, str(len(up.tools)), str(tokens)]


if __name__ == "__main__":
    sys.exit(main())
