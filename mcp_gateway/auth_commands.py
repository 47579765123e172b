"""The CLI's `auth` commands: the gateway's own OAuth logins to upstreams (docs/identity.md).

`auth login SERVER` prints the link of a shared login (and opens a browser where there is one), then
waits until the running gateway received the callback; `auth list` shows every login without a secret;
`auth revoke` forgets them (revoking them at the authorization server where it can); `auth keygen`
prints a new key for `MCP_GATEWAY_SECRET_KEY`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import webbrowser

import anyio

from .config import GatewayConfig
from .oauth.errors import LoginError
from .oauth.grants import SHARED, Grants, open_grants
from .oauth.login import LOGIN_TTL_S, start_login
from .oauth.vault import VaultError, new_secret_key
from .storage import Storage
from .store_commands import print_table, with_store

POLL_S = 1.0


def add_auth_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    """The `auth` subcommands; returns the parsers that take --config."""
    auth_p = sub.add_parser("auth", help="the gateway's OAuth logins to upstreams ([servers.<name>.oauth])")
    auth_sub = auth_p.add_subparsers(dest="auth_command", required=True)
    login_p = auth_sub.add_parser("login", help="log the gateway in to an upstream for every caller (shared)")
    login_p.add_argument("server")
    login_p.add_argument("--no-wait", action="store_true", help="print the link and return")
    auth_sub.add_parser("list", help="list the logins the gateway holds (never a token)")
    revoke_p = auth_sub.add_parser("revoke", help="forget logins (and revoke them at the server where it can)")
    revoke_p.add_argument("server")
    revoke_p.add_argument("--owner", help="whose login: `shared` (default), `user:<sub>`, `key:<name>`, or `all`")
    auth_sub.add_parser("keygen", help="print a new secret key for MCP_GATEWAY_SECRET_KEY")
    return [p for name, p in auth_sub.choices.items() if name != "keygen"]


def auth_command(config: GatewayConfig, args: argparse.Namespace) -> int:
    if args.auth_command == "keygen":
        print(new_secret_key())
        return 0
    server = getattr(args, "server", None)
    if server is not None and (server not in config.servers or config.servers[server].oauth is None):
        oauth = [n for n, s in config.servers.items() if s.oauth is not None]
        print(f"error: no [servers.{server}.oauth] in the config; servers with oauth: {', '.join(oauth) or 'none'}",
              file=sys.stderr)
        return 2

    async def run(storage: Storage) -> int:
        try:
            grants = open_grants(config, storage, os.environ)
        except VaultError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if grants is None:
            print("no server in the config uses OAuth ([servers.<name>.oauth])", file=sys.stderr)
            return 0
        try:
            if args.auth_command == "login":
                return await _login(config, grants, args.server, wait=not args.no_wait)
            if args.auth_command == "list":
                return await _list(grants)
            return await _revoke(grants, args.server, args.owner or "shared")
        finally:
            await grants.http.aclose()

    return with_store(config, run)


async def _login(config: GatewayConfig, grants: Grants, server: str, *, wait: bool) -> int:
    before = await grants.grant(server, SHARED)
    try:
        url, _ = await start_login(grants, server, config.servers[server], SHARED, config.callback_url())
    except LoginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(url)
    print(f"open this link to log the gateway in to {server} (it lasts {LOGIN_TTL_S / 60:.0f} minutes); the "
          f"login comes back to {config.callback_url()}, so the gateway must be running there", file=sys.stderr)
    if sys.stdout.isatty() and (os.environ.get("DISPLAY") or sys.platform == "darwin"):
        webbrowser.open(url)
    if not wait:
        return 0
    deadline = time.monotonic() + LOGIN_TTL_S
    while time.monotonic() < deadline:
        await anyio.sleep(POLL_S)
        now = await grants.grant(server, SHARED)
        if now is not None and (before is None or now.tokens.access_token != before.tokens.access_token):
            print(f"logged in: {server} serves every caller with this login now", file=sys.stderr)
            return 0
    print("error: no login came back within 10 minutes; run this again for a new link", file=sys.stderr)
    return 1


async def _list(grants: Grants) -> int:
    rows = []
    for info in await grants.storage.list_grants():
        grant = await grants.grant(info.server, info.owner)
        if grant is None:
            expires = "unreadable (another secret key?)"
        elif grant.expires_at is None:
            expires = "-"
        else:
            expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(grant.expires_at)) + " UTC"
        refresh = "yes" if grant is not None and grant.tokens.refresh_token else "-"
        rows.append([info.server, info.owner or "shared", time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.updated)),
                     expires, refresh])
    if not rows:
        print("no logins yet: `mcp-gateway auth login <server>`", file=sys.stderr)
        return 0
    print_table(["server", "owner", "updated (UTC)", "access token expires", "refresh"], rows)
    return 0


async def _revoke(grants: Grants, server: str, owner: str) -> int:
    owners = [i.owner for i in await grants.storage.list_grants() if i.server == server] if owner == "all" \
        else [SHARED if owner == "shared" else owner]
    done = [o for o in owners if await grants.revoke(server, o)]
    if not done:
        print(f"error: no login of {server} for {owner}", file=sys.stderr)
        return 2
    print(f"forgot {len(done)} login(s) of {server}: calls needing them ask for a new login", file=sys.stderr)
    return 0
