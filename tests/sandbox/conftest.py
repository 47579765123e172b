"""Fixtures for the sandbox tests: a small pool, and an in-test tool caller standing in for the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from sandbox import Limits, Sandbox, ToolError

FAST = Limits(timeout_s=5.0, memory_mb=256)


class FakeTools:
    """The gateway's side of tool calls: a few deterministic tools, and a log of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, args: dict[str, Any]) -> Any:
        self.calls.append((name, args))
        handler = _TOOLS.get(name)
        if handler is None:
            raise ToolError("no such tool")
        return await handler(args)


async def _forecast(args: dict[str, Any]) -> Any:
    return {"city": args["city"], "temps": [11, 14, 9]}


async def _add(args: dict[str, Any]) -> Any:
    return args["a"] + args["b"]


async def _fail(args: dict[str, Any]) -> Any:
    raise ToolError("weather.broken failed: upstream is down")


async def _echo(args: dict[str, Any]) -> Any:
    return args


async def _surrogate(args: dict[str, Any]) -> Any:
    return {"text": "bad \ud800 half", "key\udfff": 1}


async def _big(args: dict[str, Any]) -> Any:
    return 2**200 + 1


async def _slow(args: dict[str, Any]) -> Any:
    await anyio.sleep(float(args.get("s", 0.2)))
    return "slept"


async def _crash(args: dict[str, Any]) -> Any:
    raise KeyError("oops")


async def _nested(args: dict[str, Any]) -> Any:
    return [[] for _ in range(int(args["n"]))]


_TOOLS = {
    "weather.forecast": _forecast,
    "weather.broken": _fail,
    "calc.add": _add,
    "util.echo": _echo,
    "util.surrogate": _surrogate,
    "util.big": _big,
    "util.slow": _slow,
    "util.crash": _crash,
    "util.nested": _nested,
}
SERVERS = ["weather", "calc", "util"]


@pytest.fixture
def tools() -> FakeTools:
    return FakeTools()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(FAST, workers=2) as sb:
        yield sb
