"""Code Mode end to end: a real SDK client over HTTP, the gateway, real upstream processes."""

from __future__ import annotations

import ast
import sys

import mcp_types as types
import pytest

from mcp_gateway.catalog import _entry
from stubs.render import render_signature
from tests.helpers import gateway_client, http_fixture, key_client, make_config, shared_gateway, stdio, text_of

pytestmark = pytest.mark.anyio

TWO_SERVERS = {"math": stdio("math_server"), "text": stdio("text_server")}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# Gateways shared by the tests that only list and call stateless tools.
two_servers = shared_gateway(TWO_SERVERS)
math_only = shared_gateway({"math": stdio("math_server")})


async def test_lists_exactly_four_meta_tools_with_complete_definitions(two_servers: str) -> None:
    async with key_client(two_servers) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["listToolFiles", "readToolFile", "getToolDocs", "executeToolCode"]
    for tool in tools:
        assert tool.input_schema["type"] == "object"
        assert isinstance(tool.input_schema["properties"], dict)
        assert tool.description and len(tool.description) <= 2048
        assert tool.meta == {"anthropic/alwaysLoad": True}


async def test_listing_stubs_and_docs() -> None:
    servers = {**TWO_SERVERS, "broken": {"command": sys.executable, "args": ["-c", "raise SystemExit(1)"]}}
    async with gateway_client(make_config(servers)) as client:
        listing = text_of(await client.call_tool("listToolFiles", {}))
        stub = text_of(await client.call_tool("readToolFile", {"fileName": "servers/math.pyi"}))
        missing = await client.call_tool("readToolFile", {"fileName": "servers/nope.pyi"})
        docs = text_of(await client.call_tool("getToolDocs", {"server": "math", "tool": "centroid"}))
        bad_docs = await client.call_tool("getToolDocs", {"server": "math", "tool": "ad"})
    assert "servers/math.pyi" in listing and "servers/text.pyi" in listing
    assert "broken" in listing and "unavailable" in listing
    ast.parse(stub)
    assert "def add(a: int, b: int) -> int" in stub
    assert "def get_client(" in stub and "def get_client_2(" in stub
    assert missing.is_error and "servers/math.pyi" in text_of(missing)
    assert "points" in docs and "median" in docs and "math.centroid(" in docs
    assert bad_docs.is_error and "did you mean math.add" in text_of(bad_docs)


async def test_script_combines_two_upstreams_and_returns_only_its_result(two_servers: str) -> None:
    code = """
counted = text.count(text="the quick brown fox")
total = math.add(a=counted["words"], b=123456789012345678901234567890)
items = text.inventory()
low = [i["sku"] for i in items if i["stock"] < 5]
print("words:", counted["words"])
result = {"total": total, "low": low}
"""
    async with key_client(two_servers) as client:
        out = await client.call_tool("executeToolCode", {"code": code})
    text = text_of(out)
    assert not out.is_error, text
    assert "words: 4" in text
    assert 'result = {"total": 123456789012345678901234567894, "low": ["A1", "B2"]}' in text
    assert "C3" not in text  # intermediate results never reach the model


async def test_colliding_names_stay_callable(two_servers: str) -> None:
    code = 'result = [math.get_client(id="1"), math.get_client_2(id="2")]'
    async with key_client(two_servers) as client:
        out = await client.call_tool("executeToolCode", {"code": code})
    assert sorted(eval(text_of(out).removeprefix("result = "))) == ["dash:2", "underscore:1"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("x = 1\ny = (2 +\n", "line 3"),
        ("result = math.ad(a=1, b=2)", "did you mean math.add"),
        ('result = math.fail(message="disk on fire")', "math.fail returned an error: "),
        ('result = math.add(a="one", b=2)', "'one' is not of type 'integer'"),
        ('print("before")\nresult = math.fail()', "before"),
    ],
)
async def test_script_errors_are_clear(math_only: str, code: str, expected: str) -> None:
    async with key_client(math_only) as client:
        out = await client.call_tool("executeToolCode", {"code": code})
    assert out.is_error
    assert expected in text_of(out)


async def test_upstream_timeout_and_death_are_script_errors() -> None:
    config = make_config({"math": stdio("math_server", timeout_s=0.5)}, gateway={"reconnect_initial_s": 10})
    async with gateway_client(config) as client:
        slow = await client.call_tool("executeToolCode", {"code": "result = math.slow(seconds=5)"})
        crash = await client.call_tool("executeToolCode", {"code": "result = math.Crash()"})
        after = await client.call_tool("executeToolCode", {"code": "result = math.add(a=1, b=2)"})
        listing = text_of(await client.call_tool("listToolFiles", {}))
    assert slow.is_error and "math.slow" in text_of(slow) and "0.5 s" in text_of(slow)
    assert crash.is_error and "math.Crash" in text_of(crash)
    assert after.is_error and "math is unavailable (connection lost" in text_of(after), text_of(after)
    assert "(unavailable: connection lost: Connection closed; retrying with backoff)" in listing, listing


async def test_http_and_sse_upstreams() -> None:
    async with (
        http_fixture("math_server", "http") as http_url,
        http_fixture("math_server", "sse") as sse_url,
    ):
        config = make_config({"h": {"url": http_url}, "s": {"url": sse_url, "transport": "sse"}})
        async with gateway_client(config) as client:
            out = await client.call_tool("executeToolCode", {"code": "result = h.add(a=1, b=2) + s.add(a=3, b=4)"})
    assert text_of(out) == "result = 10"


async def test_real_pypi_server_mcp_server_time() -> None:
    exe = str(__import__("pathlib").Path(sys.executable).with_name("mcp-server-time"))
    config = make_config({"time": {"command": exe, "args": ["--local-timezone", "UTC"]}})
    code = 'r = time.convert_time(source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo")\n'
    code += 'result = r["target"]["datetime"][11:16]'
    async with gateway_client(config) as client:
        stub = text_of(await client.call_tool("readToolFile", {"fileName": "servers/time.pyi"}))
        out = await client.call_tool("executeToolCode", {"code": code})
    assert "def get_current_time(" in stub and "def convert_time(" in stub
    assert text_of(out) == 'result = "21:00"', text_of(out)


async def test_none_for_an_optional_parameter_that_takes_no_null_leaves_it_out(two_servers: str) -> None:
    code = 'result = [math.echo(text="hi", times=None), math.centroid(points=[{"x": 1, "y": 3}], mode=None)]'
    async with key_client(two_servers) as client:
        out = await client.call_tool("executeToolCode", {"code": code})
        refused = await client.call_tool("executeToolCode", {"code": 'result = math.echo(text=None)'})
    assert not out.is_error, text_of(out)
    assert '"hi"' in text_of(out) and '"x": 1.0' in text_of(out)
    assert refused.is_error and "text" in text_of(refused) and "None is not of type 'string'" in text_of(refused)


def test_none_is_left_out_by_the_schema_the_stub_shows_through_refs_and_all_of() -> None:
    """Optional parameters are found through a root `allOf` and `$ref`s, as the stub finds them."""
    schema = {
        "$defs": {"O": {"type": "integer"}, "N": {"type": ["string", "null"]}},
        "allOf": [{"type": "object", "properties": {
            "limit": {"$ref": "#/$defs/O"},
            "cursor": {"$ref": "#/$defs/N"},
            "sort-by": {"allOf": [{"$ref": "#/$defs/O"}]},
            "id": {"type": "integer"},
        }, "required": ["id"]}],
    }  # fmt: skip
    entry = _entry("s", types.Tool(name="t", input_schema=schema), "t", None)
    assert "limit: int = None" in render_signature(entry.spec)
    sent = entry.upstream_arguments({"id": None, "limit": None, "cursor": None, "sort_by": None})
    assert sent == {"id": None, "cursor": None}
    assert entry.upstream_arguments({"id": 1, "limit": 5, "sort_by": 2}) == {"id": 1, "limit": 5, "sort-by": 2}


async def test_first_hour_mistakes_get_errors_that_point_to_the_fix() -> None:
    """Misspelt arguments (script and direct), a direct-mode server in a script, a call result in a batch, no code."""
    config = make_config({"math": stdio("math_server"), "text": stdio("text_server", mode="direct")})
    async with gateway_client(config) as client:
        async def run(code: str) -> tuple[bool, str]:
            out = await client.call_tool("executeToolCode", {"code": code})
            return bool(out.is_error), text_of(out)

        misspelt = await run('result = math.echo(text="x", txt="y")')
        direct = await client.call_tool("text_count", {"text": "a b", "txt": 1})
        in_script = await run('result = text.count(text="a b")')
        batch = await run("result = parallel([math.add(a=1, b=2)])")
        empty, comments, blank = await run(""), await run("# nothing yet\n"), await run('print("")')
    assert misspelt[0] and "unexpected keyword argument 'txt' for math.echo; did you mean 'text'?" in misspelt[1]
    assert direct.is_error
    assert "unexpected keyword argument 'txt' for text_count; did you mean 'text'?" in text_of(direct)
    assert in_script[0] and "text is in direct mode: its tools are not in scripts; call them directly (text_count)" \
        in in_script[1], in_script[1]
    assert batch[0] and 'write parallel([("math.add", {"a": 1, "b": 2})])' in batch[1], batch[1]
    hint = "(no output; assign `result = ...` or print() to return data)"
    assert empty == (False, hint) and comments == (False, hint) and blank == (False, hint)
