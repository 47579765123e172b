"""Reloading the config while serving: who may call what changes without a restart.

`serve` watches its config file (once a second) and reloads it on SIGHUP too. The tables that
decide access and spending, `[groups]`, `[teams]`, `[keys]` and `[tools]`, apply at once to every
request after the reload; a change to `[gateway]`, `[storage]`, `[limits]` or `[servers]` needs a
restart and is said so in the log. A file that does not load (a syntax error, an unknown team) is
not applied: the gateway keeps the config it has and logs each problem with its line.
"""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import structlog

from .config import ConfigError
from .config_files import load_config
from .gateway import Gateway

log = structlog.get_logger("mcp_gateway.reload")

POLL_S = 1.0
"""How often the config file is checked for a change."""


def reload_config(gw: Gateway, path: Path) -> bool:
    """Apply the file's access tables now; whether they were applied."""
    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("config not reloaded: the gateway keeps the one it has", error=str(exc))
        return False
    left = gw.apply_governance(new)
    log.info("config reloaded: groups, teams, keys and tool rules apply now", config=str(path))
    if left:
        log.warning("config tables changed that need a restart to apply", tables=left)
    return True


async def watch_config(gw: Gateway, path: Path) -> None:
    """Reload when the file changes (checked every `POLL_S`) or on SIGHUP; runs until cancelled."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_on_sighup, gw, path)
        seen = _stamp(path)
        while True:
            await anyio.sleep(POLL_S)
            stamp = _stamp(path)
            if stamp != seen and stamp is not None:
                seen = stamp
                reload_config(gw, path)


async def _on_sighup(gw: Gateway, path: Path) -> None:
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            reload_config(gw, path)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None  # moved away for a moment (an editor saving): keep what is loaded
    return found.st_mtime_ns, found.st_size
