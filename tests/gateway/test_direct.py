"""Direct mode: upstream tools passed through under unique names, arguments validated first."""

from __future__ import annotations

import pytest

from tests.helpers import gateway_client, make_config, stdio, text_of

pytestmark = pytest.mark.anyio


async def test_direct_tools_are_listed_namespaced_and_intact() -> None:
    config = make_config({"math": stdio("math_server", mode="direct"), "text": stdio("text_server")})
    async with gateway_client(config) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        ok = await client.call_tool("math_add", {"a": 2, "b": 3})
        bad = await client.call_tool("math_add", {"a": "two"})
        unknown = await client.call_tool("math_ad", {})
    assert {"listToolFiles", "executeToolCode", "math_add", "math_get-client", "math_get_client"} <= set(tools)
    centroid = tools["math_centroid"]
    assert "$defs" in centroid.input_schema and centroid.output_schema is not None
    assert ok.structured_content == {"result": 5}
    assert bad.is_error
    assert "'two' is not of type 'integer'" in text_of(bad) and "'b' is a required property" in text_of(bad)
    assert unknown.is_error and "did you mean math_add" in text_of(unknown)


async def test_pass_through_names_for_a_single_upstream() -> None:
    config = make_config(
        {"math": stdio("math_server", mode="direct")}, gateway={"prefix_direct_tools": False}
    )
    async with gateway_client(config) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        out = await client.call_tool("echo", {"text": "ab", "times": 2})
    assert "listToolFiles" not in names and "echo" in names and "get-client" in names
    assert text_of(out) == "abab"
