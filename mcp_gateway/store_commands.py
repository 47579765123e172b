"""The CLI's commands on the store: `keys create|list|revoke`, `logs` and `migrate`.

Each opens the store the config names (`[storage] url`, or SQLite in the state directory), so
they act on what every replica shares. A store that cannot be reached is an error (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable

import anyio

from .config import GatewayConfig
from .governance.keys import KeyRing
from .storage import Storage, StorageUnavailable, open_storage
from .visible import visible


def with_store(config: GatewayConfig, command: Callable[[Storage], Awaitable[int]]) -> int:
    async def run() -> int:
        storage = open_storage(config)
        try:
            return await command(storage)
        except StorageUnavailable as exc:
            print(f"error: the store is unavailable: {exc}", file=sys.stderr)
            return 2
        finally:
            await storage.close()

    return anyio.run(run)


def keys_command(config: GatewayConfig, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        if args.keys_command == "create":
            try:
                secret = await KeyRing(config, storage).create(args.name, args.team, args.groups, admin=args.admin)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(secret)
            print(f"key {args.name!r} created; this is the only time it is shown", file=sys.stderr)
            if not args.team and not args.groups:
                print("warning: this key has no team and no groups, so it may call no tool (deny by default); "
                      "revoke it and create one with --team or --groups (see docs/governance.md)", file=sys.stderr)
        elif args.keys_command == "list":
            rows = [[k.name, k.team or "-", ",".join(k.groups) or "-", "yes" if k.admin else "-", when(k.created),
                     f"revoked {when(k.revoked)}" if k.revoked else "active"] for k in await storage.list_keys()]
            rows += [[n, k.team or "-", ",".join(k.groups) or "-", "yes" if k.admin else "-", "(config)", "active"]
                     for n, k in config.keys.items()]
            print_table(["name", "team", "groups", "admin", "created", "status"], rows)
        elif not await storage.revoke_key(args.name):
            print(f"error: no active key named {args.name!r} in {storage.name}", file=sys.stderr)
            return 2
        else:
            print(f"key {args.name!r} revoked: requests with it are refused from now on", file=sys.stderr)
        return 0

    return with_store(config, run)


def logs_command(config: GatewayConfig, args: argparse.Namespace) -> int:
    since = time.time() - _duration(args.since) if args.since else None

    async def run(storage: Storage) -> int:
        rows = await storage.query_audit(key=args.key, tool=args.tool, since=since, limit=args.limit)
        if args.json:
            for r in rows:  # ASCII only: a stored value can carry no terminal escape or bidi override to the screen
                print(json.dumps(dataclasses.asdict(r)))
            return 0
        replicas = len({r.replica for r in rows}) > 1  # several replicas wrote these rows: say which
        print_table(["time", "key", "server", "tool", "outcome", "ms", "execution", *(["replica"] if replicas else [])],
                    [[when(r.ts), *(visible(v) for v in (r.key, r.server or "-", r.tool, r.outcome)),
                      f"{r.latency_ms:.1f}", r.execution_id or "-", *([visible(r.replica or "-")] if replicas else [])]
                     for r in rows])
        return 0

    return with_store(config, run)


def migrate_command(config: GatewayConfig, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        applied = await storage.migrate()
        print(f"{storage.name}: " + (f"applied {', '.join(applied)}" if applied else "schema up to date"))
        return 0

    return with_store(config, run)


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise SystemExit(f"error: --since takes a number and a unit (s, m, h, d), e.g. 1h; got {text!r}")
    return int(text[:-1]) * units[text[-1]]


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
