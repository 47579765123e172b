"""Fixture upstreams with extra arguments, and a gateway served with forwarding installed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import uvicorn

from mcp_gateway import Gateway
from mcp_gateway.server import build_app
from tests.helpers import FIXTURES, free_port, wait_for_port


@contextlib.asynccontextmanager
async def fixture_server(fixture: str, *args: str) -> AsyncIterator[str]:
    """Run `fixture.py http PORT *args` as its own process; yield its `/mcp` URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURES / f"{fixture}.py"), "http", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def serve_forwarding_gateway(gw: Gateway) -> AsyncIterator[str]:
    """Serve `build_app(gw)` on a free loopback port; yield its `/mcp` URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(gw), host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True
