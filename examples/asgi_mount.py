"""Mount the gateway's ASGI app inside an existing Starlette (or FastAPI) application.

    python examples/asgi_mount.py --port 8099

A mounted app's lifespan is not run by its parent, so the parent's lifespan runs it: that is
what starts the upstream sessions and the MCP session manager.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from mcp_gateway import Gateway, build_app, parse_config

DEMO = Path(__file__).parent / "demo"


def make_app() -> Starlette:
    config = parse_config({
        "gateway": {"state_dir": str(DEMO / ".state"), "anonymous": True},  # no keys: local callers only
        "servers": {"inventory": {"command": sys.executable, "args": [str(DEMO / "inventory.py")]}},
    })
    gateway_app = build_app(Gateway(config))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gateway_app.router.lifespan_context(gateway_app):
            yield

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("my app; MCP gateway at /tools/mcp\n")

    return Starlette(routes=[Route("/", home), Mount("/tools", app=gateway_app)], lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    uvicorn.run(make_app(), host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
