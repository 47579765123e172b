"""Real parts for tests: fixture upstreams as processes, the gateway on a real loopback port."""

from __future__ import annotations

import contextlib
import inspect
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway import Gateway, GatewayConfig, parse_config
from mcp_gateway.server import build_app

FIXTURES = Path(__file__).parent / "fixtures"


def stdio(fixture: str, *args: str, **extra: Any) -> dict[str, Any]:
    """A `[servers.<name>]` table launching a fixture server over stdio."""
    return {"command": sys.executable, "args": [str(FIXTURES / f"{fixture}.py"), *args], **extra}


def make_config(servers: Mapping[str, Any], **sections: Any) -> GatewayConfig:
    """A config whose state (keys, audit) lives in a fresh temporary directory unless one is given."""
    gateway = {"state_dir": tempfile.mkdtemp(prefix="mcp-gateway-test-"), "anonymous": True,
               **sections.pop("gateway", {})}
    return parse_config({"servers": dict(servers), "gateway": gateway, **sections})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], object], timeout_s: float = 15.0, *, every_s: float = 0.05) -> None:
    """Poll `check()` (plain or async) every `every_s` until it is true; `TimeoutError` after `timeout_s`."""
    with anyio.fail_after(timeout_s):
        while True:
            done = check()
            if inspect.isawaitable(done):
                done = await done
            if done:
                return
            await anyio.sleep(every_s)


async def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    async def accepts() -> bool:
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True

    await eventually(accepts, timeout_s)


@contextlib.asynccontextmanager
async def http_fixture(fixture: str, transport: str = "http", *args: str) -> AsyncIterator[str]:
    """Run a fixture server (`fixture.py TRANSPORT PORT *args`) as its own process on a free port; yield its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / f"{fixture}.py"), transport, str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port)
        yield f"http://127.0.0.1:{port}/{'sse' if transport == 'sse' else 'mcp'}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on `port` (else a free one) of 127.0.0.1; yield its base URL (`http://127.0.0.1:P`)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await eventually(lambda: server.started, 30, every_s=0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@contextlib.asynccontextmanager
async def serve_gateway(gw: Gateway, port: int | None = None) -> AsyncIterator[str]:
    """Serve the gateway's Starlette app on `port` (else a free one) of 127.0.0.1; yield the /mcp URL."""
    async with serve_asgi(build_app(gw), port) as base:
        yield f"{base}/mcp"


def shared_gateway(servers: Mapping[str, Any], **sections: Any) -> Any:
    """A module-scoped fixture: one gateway for `make_config(servers, **sections)`, served; it yields the /mcp URL.

    Assign it to the fixture's name in a test module that also has a module-scoped `anyio_backend`.
    Only for tests that need no fresh state: they all see the same upstreams, audit and quotas.
    """

    @pytest.fixture(scope="module")
    async def served() -> AsyncIterator[str]:
        async with serve_gateway(Gateway(make_config(servers, **sections))) as url:
            yield url

    return served


@contextlib.asynccontextmanager
async def key_client(url: str, key: str | None = None, **client_options: Any) -> AsyncIterator[Client]:
    """An SDK `Client` over streamable HTTP to `url`, sending `Authorization: Bearer <key>` when a key is given.

    `client_options` go to `Client` as they are: `mode=...`, callbacks, handlers.
    """
    async with contextlib.AsyncExitStack() as stack:
        server: Any = url
        if key is not None:
            http = await stack.enter_async_context(httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}))
            server = streamable_http_client(url, http_client=http)
        yield await stack.enter_async_context(Client(server, **client_options))


@contextlib.asynccontextmanager
async def gateway_client(config: GatewayConfig, *, mode: str = "auto") -> AsyncIterator[Client]:
    """An SDK `Client` talking to a gateway over real HTTP on 127.0.0.1."""
    async with serve_gateway(Gateway(config)) as url, key_client(url, mode=mode) as client:
        yield client


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
