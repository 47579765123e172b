"""A real npm upstream (the reference `server-everything`, TypeScript SDK, over stdio) through the gateway."""

from __future__ import annotations

import ast
import os
import signal
from pathlib import Path

import mcp_types as types
import pytest

from mcp_gateway import Gateway, call
from tests.helpers import eventually, make_config, text_of
from tests.interop.npm import EVERYTHING, npm_bin

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def everything() -> Path:
    return npm_bin(EVERYTHING)


def _config(everything: Path) -> object:
    return make_config({"everything": {"command": str(everything), "args": ["stdio"]}},
                       gateway={"reconnect_initial_s": 0.2, "reconnect_max_s": 1, "health_interval_s": 0})


async def test_stubs_scripts_and_images_from_a_typescript_server(everything: Path) -> None:
    async with Gateway(_config(everything)) as gw:  # type: ignore[arg-type]
        assert gw.upstream("everything").state == "ready", gw.upstream("everything").status
        stub = text_of(await call(gw, "readToolFile", {"fileName": "servers/everything.pyi"}))
        code = ('print(everything.echo(message="héllo"))\n'
                'weather = everything.get_structured_content(location="Chicago")\n'
                'result = {"sum": everything.get_sum(a=2, b=3), "keys": sorted(weather.keys())}\n')
        out = await call(gw, "executeToolCode", {"code": code})
        image = await call(gw, "executeToolCode", {"code": "result = everything.get_tiny_image()"})
        bad = await call(gw, "executeToolCode", {"code": 'result = everything.get_sum(a="two", b=3)'})
    ast.parse(stub)
    assert "def get_structured_content(location: Literal[" in stub and "def get_sum(a: float, b: float)" in stub
    assert not out.is_error, text_of(out)
    assert "Echo: héllo" in text_of(out) and "The sum of 2 and 3 is 5." in text_of(out)
    assert '"keys": ["conditions", "humidity", "temperature"]' in text_of(out)
    assert any(isinstance(b, types.ImageContent) and b.mime_type == "image/png" for b in image.content)
    assert bad.is_error and "invalid arguments for everything.get_sum" in text_of(bad)


async def test_a_killed_typescript_server_is_restarted(everything: Path) -> None:
    async with Gateway(_config(everything)) as gw:  # type: ignore[arg-type]
        before = _node_children()
        assert before, "server-everything should run as a child of this process"
        for pid in before:
            os.kill(pid, signal.SIGKILL)

        async def answers() -> bool:
            out = await call(gw, "executeToolCode", {"code": "result = everything.get_sum(a=1, b=1)"})
            return "The sum of 1 and 1 is 2." in text_of(out)

        await eventually(answers, 20, every_s=0.1)
        assert _node_children() and not set(_node_children()) & set(before)


def _node_children() -> list[int]:
    """This process's child processes running node (the stdio upstream)."""
    pids = [int(p) for task in Path(f"/proc/{os.getpid()}/task").glob("*/children") for p in task.read_text().split()]
    return [p for p in pids if b"server-everything" in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it has exited meanwhile
        return b""
