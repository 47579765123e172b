"""Fixture upstreams kept next to the tests that use them (`lists_server.py`, `rounds_server.py`), run over
stdio or as a streamable HTTP process, in either era."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.helpers import free_port, wait_for_port

HERE = Path(__file__).parent


@contextlib.asynccontextmanager
async def local_upstream(fixture: str, upstream: str, **extra: Any) -> AsyncIterator[dict[str, Any]]:
    """The `[servers.<name>]` table for `HERE/<fixture>_server.py` as `http`, `stdio`, `http-legacy` or `stdio-legacy`
    (legacy: the fixture refuses `server/discover`, so the gateway speaks 2025-11-25 to it)."""
    transport, _, era = upstream.partition("-")
    args = [str(HERE / f"{fixture}_server.py"), transport] + (["--legacy"] if era else [])
    if transport == "stdio":
        yield {"command": sys.executable, "args": args, **extra}
        return
    port = free_port()
    args.insert(2, str(port))
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_port(port)
        yield {"url": f"http://127.0.0.1:{port}/mcp", **extra}
    finally:
        proc.kill()
        proc.wait(timeout=10)
