"""One change of an upstream's prompts or resources reaches each client once, whatever the eras.

A 2026-07-28 upstream announces changes on the gateway's `subscriptions/listen` stream, and the SDK
client hands every frame of that stream to the message handler as well; the gateway must relay
each change once, not once per path. The upstream is `lists_server.py` (next to this file), which
announces each change exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp_gateway import Gateway
from mcp_gateway.upstream import _announces_list_changes
from tests.gateway.local_upstreams import local_upstream
from tests.helpers import eventually, key_client, make_config, serve_gateway

pytestmark = pytest.mark.anyio


def counter(heard: list[str]) -> Any:
    """A message handler that notes each prompts or resources `list_changed` the client receives."""

    async def on_message(message: Any) -> None:
        if isinstance(message, types.PromptListChangedNotification):
            heard.append("prompts")
        elif isinstance(message, types.ResourceListChangedNotification):
            heard.append("resources")

    return on_message


@pytest.mark.parametrize("upstream", ["http", "stdio", "http-legacy", "stdio-legacy"])
async def test_one_change_reaches_each_client_once(upstream: str) -> None:
    legacy: list[str] = []
    modern: list[str] = []  # every frame of its listen stream: the SDK hands each to the message handler
    async with local_upstream("lists", upstream, mode="direct") as server, contextlib.AsyncExitStack() as stack:
        gw = Gateway(make_config({"lists": server}, gateway={"prefix_direct_tools": False}))
        url = await stack.enter_async_context(serve_gateway(gw))
        old = await stack.enter_async_context(key_client(url, mode="legacy", message_handler=counter(legacy)))
        new = await stack.enter_async_context(key_client(url, message_handler=counter(modern)))
        assert (old.protocol_version, new.protocol_version) == ("2025-11-25", "2026-07-28")
        await old.list_prompts()  # a handshake-era client is told of the lists it has listed
        await old.list_resources()
        await stack.enter_async_context(new.listen(prompts_list_changed=True, resources_list_changed=True))

        def heard(kind: str) -> Callable[[], bool]:
            return lambda: kind in legacy and kind in modern

        for kind in ["prompts", "resources"]:
            await new.call_tool("change", {"kind": kind})
            await eventually(heard(kind), 10)
            await anyio.sleep(0.5)  # a second copy, if one were coming, has come
        assert (legacy, modern) == (["prompts", "resources"], ["prompts", "resources"])
        assert [p.name for p in (await old.list_prompts()).prompts] == ["first", "p1"]
        assert [r.uri for r in (await new.list_resources()).resources] == ["note://first", "note://n1"]


def test_an_upstream_without_tools_is_followed_for_its_other_lists() -> None:
    """A 2026-07-28 server with prompts but no tools (so no tools capability) still gets a listen stream."""
    prompts_only = types.ServerCapabilities(prompts=types.PromptsCapability(list_changed=True))
    silent = types.ServerCapabilities(prompts=types.PromptsCapability(list_changed=False))
    cases = ((prompts_only, "2026-07-28"), (silent, "2026-07-28"), (prompts_only, "2025-11-25"))
    follows = [_announces_list_changes(SimpleNamespace(server_capabilities=caps, protocol_version=version))  # type: ignore[arg-type]
               for caps, version in cases]
    assert follows == [True, False, False]
