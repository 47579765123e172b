"""Checking a tool result's structured content against the tool's output schema: in the gateway, off the
event loop for big content, instead of in the SDK client (which held the loop 2.5-5.8 s for 175,000 objects).

Unit tests of `Validators.check_result`, then end to end through the gateway with the typed fixture upstream
(tests/fixtures/typed_server.py), then the loop-stall test of a big typed result, direct and from a script.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from structlog.testing import capture_logs

from mcp_gateway import Gateway, catalog
from mcp_gateway.catalog import ToolEntry
from mcp_gateway.errors import InvalidOutput
from mcp_gateway.upstream_client import open_client
from mcp_gateway.validation import MAX_PROBLEMS, Validators
from stubs import assign_identifiers
from tests.gateway.test_loop_stall import Ticked, held_about_a_parse, ticked_gateway
from tests.helpers import FIXTURES, key_client, make_config, serve_gateway, stdio, text_of

COUNT = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}
UNIQUE = {"type": "object", "properties": {"items": {"type": "array", "uniqueItems": True}}}
MB = 3.5
"""MiB of the big result: about 175,000 objects, under the 4 MiB caps."""


def _objects(mb: float) -> int:
    """How many objects the fixture's `objects(mb=...)` returns."""
    return int(mb * 1024 * 1024) // len('{"i":100000,"s":"x"},')


def entry(server: str, name: str, output: dict[str, Any] | None, direct_name: str | None = None) -> ToolEntry:
    tool = types.Tool(name=name, input_schema={"type": "object"}, output_schema=output)
    return catalog._entry(server, tool, assign_identifiers([name])[name], direct_name)


def result(structured: dict[str, Any] | None, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text="x")], structured_content=structured,
                                is_error=is_error)


def problems(validators: Validators, e: ToolEntry, structured: dict[str, Any]) -> str:
    with pytest.raises(InvalidOutput) as info:
        validators.check_result_now(e, structured)
    return str(info.value)


def test_content_that_matches_passes() -> None:
    validators = Validators()
    validators.check_result_now(entry("s", "t", COUNT), {"count": 3})
    wrapped = {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]}
    validators.check_result_now(entry("math", "add", wrapped), {"result": 5})  # as SDK servers wrap plain values


def test_content_that_does_not_match_is_an_error_naming_the_field() -> None:
    assert problems(Validators(), entry("s", "t", COUNT), {"count": "many"}) == (
        "s.t returned structured content that does not match its output schema: count: 'many' is not of type "
        "'integer'")
    assert problems(Validators(), entry("s", "t", COUNT, direct_name="s_t"), {}).startswith(
        "s_t returned structured content that does not match its output schema: 'count' is a required property")


def test_at_most_max_problems_are_named_and_each_is_cut() -> None:
    listed = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}
    message = problems(Validators(), entry("s", "t", listed), {"items": ["x" * 100_000] * 1000})
    named = message.split(": ", 1)[1].split("; ")
    assert len(named) == MAX_PROBLEMS and all(p.startswith("items.") and p.endswith("…") for p in named)
    assert len(message) < 2000


@pytest.mark.anyio
async def test_no_structured_content_is_an_error_unless_the_result_is_one() -> None:
    validators, e = Validators(), entry("s", "t", COUNT)
    with pytest.raises(InvalidOutput) as info:
        await validators.check_result(e, result(None))
    assert str(info.value) == "s.t returned no structured content, although it declares an output schema"
    await validators.check_result(e, result(None, is_error=True))  # an isError result is the tool's own answer
    await validators.check_result(e, result({"count": "many"}, is_error=True))
    await validators.check_result(entry("s", "u", None), result(None))  # no output schema: nothing to check
    await validators.check_result(entry("s", "u", None), result({"anything": 1}))


def test_an_invalid_output_schema_is_said_once_and_means_no_validation() -> None:
    validators = Validators()
    broken = entry("s", "t", {"type": "object", "properties": {"count": {"type": "nonsense"}}})
    with capture_logs() as logs:
        validators.check_result_now(broken, {"count": "anything"})
        validators.check_result_now(broken, {"count": 1})
    [warning] = logs
    assert warning["event"] == "tool output schema is invalid; its results are not validated"
    assert (warning["server"], warning["tool"], warning["log_level"]) == ("s", "t", "warning")


def test_a_ref_to_another_document_is_never_fetched_and_said_once() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/other.json#/x"}}}
    validators, e = Validators(), entry("s", "r", schema)
    started = time.perf_counter()
    with capture_logs() as logs:
        validators.check_result_now(e, {"a": 1})
        validators.check_result_now(e, {"a": 2})
    assert time.perf_counter() - started < 1
    assert [log["event"] for log in logs] == ["tool schema refers outside itself; its results are not checked"]


def test_input_and_output_validators_are_kept_apart_until_cleared() -> None:
    validators = Validators()
    tool = types.Tool(name="t", input_schema={"type": "object", "properties": {"count": {"type": "string"}}},
                      output_schema=COUNT)
    e = catalog._entry("s", tool, "t", None)
    validators.check_now(e, {"count": "three"})
    validators.check_result_now(e, {"count": 3})
    changed = entry("s", "t", {"type": "object", "properties": {"count": {"type": "string"}}})
    validators.check_result_now(changed, {"count": 3})  # the first schema's validator is still in use
    validators.clear()
    assert problems(validators, changed, {"count": 3}).endswith("count: 3 is not of type 'string'")


def test_unique_items_on_many_objects_is_linear() -> None:
    """jsonschema compares object items pairwise: 20,000 of them took 33 s."""
    validators, e = Validators(), entry("s", "u", UNIQUE)
    many = [{"id": i, "tags": [i, str(i)]} for i in range(20_000)]
    started = time.perf_counter()
    validators.check_result_now(e, {"items": many})
    assert "item 20000 repeats" in problems(validators, e, {"items": [*many, {"tags": [7, "7"], "id": 7}]})
    assert time.perf_counter() - started < 2  # quadratic work would take half a minute


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def typed() -> AsyncIterator[tuple[Gateway, str]]:
    gw = Gateway(make_config({"t": stdio("typed_server"), "dt": stdio("typed_server", mode="direct")}))
    async with serve_gateway(gw) as url:
        yield gw, url


@pytest.mark.anyio
async def test_a_result_breaking_its_output_schema_is_an_error_for_direct_calls_and_scripts(
        typed: tuple[Gateway, str]) -> None:
    gw, url = typed
    mismatch = "returned structured content that does not match its output schema: count: 'many' is not of type"
    async with key_client(url) as client:
        direct = await client.call_tool("dt_wrong", {})
        script = await client.call_tool("executeToolCode", {"code": "result = t.wrong()"})
        textual = await client.call_tool("dt_textual", {})
        in_script = await client.call_tool("executeToolCode", {"code": "result = t.textual()"})
    assert direct.is_error and text_of(direct) == f"dt_wrong {mismatch} 'integer'"
    assert script.is_error and f"t.wrong {mismatch} 'integer'" in text_of(script), text_of(script)
    assert textual.is_error
    assert text_of(textual) == "dt_textual returned no structured content, although it declares an output schema"
    assert in_script.is_error and "t.textual returned no structured content" in text_of(in_script)
    rows = await gw.storage.query_audit(tool="wrong")
    assert sorted((r.server, r.outcome, r.execution_id is None) for r in rows) == [
        ("dt", "InvalidOutput", True), ("t", "InvalidOutput", False)]  # the direct call, the script's
    assert all(mismatch in (r.error or "") for r in rows)


@pytest.mark.anyio
async def test_matching_results_tool_errors_and_results_under_an_invalid_schema_pass_through(
        typed: tuple[Gateway, str]) -> None:
    _, url = typed
    async with key_client(url) as client:
        direct = await client.call_tool("dt_objects", {"mb": 0.01})
        script = await client.call_tool("executeToolCode", {"code": 'r = t.objects(mb=0.01)\nresult = r["items"][2]'})
        failing = await client.call_tool("dt_failing", {})
        careless = await client.call_tool("executeToolCode", {"code": "result = t.careless()"})
    assert not direct.is_error and direct.structured_content is not None
    assert len(direct.structured_content["items"]) == _objects(0.01)
    assert text_of(script) == 'result = {"i": 2, "s": "x"}'
    assert failing.is_error and text_of(failing) == "it broke"  # the tool's own error, as it was
    assert text_of(careless) == 'result = {"count": "whatever"}'  # its schema is invalid: not checked


@pytest.mark.anyio
async def test_the_upstream_client_leaves_the_check_to_the_gateway() -> None:
    """The SDK client would list the tools first (its session never did), then refuse the result itself."""
    config = make_config({"t": stdio("typed_server")}).servers["t"]
    async with open_client(config, {}) as client:
        out = await client.call_tool("wrong", {})
    assert out.structured_content == {"count": "many"}


@pytest.fixture(scope="module")
async def ticked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ticked]:
    server = FIXTURES / "typed_server.py"
    servers = (f'[servers.t]\ncommand = "{sys.executable}"\nargs = ["{server}"]\n'
               f'[servers.dt]\ncommand = "{sys.executable}"\nargs = ["{server}"]\nmode = "direct"\n')
    async with ticked_gateway(tmp_path_factory.mktemp("output-stall"), servers,  # both paths warm
                              ("executeToolCode", {"code": "result = t.objects(mb=0.1)"}),
                              ("dt_objects", {"mb": 0.1})) as gw:
        yield gw


async def _call(gw: Ticked, way: str) -> None:
    count = _objects(MB)
    if way == "direct":
        out = await gw.client.call_tool("dt_objects", {"mb": MB})
        assert out.structured_content is not None and len(out.structured_content["items"]) == count
    else:
        code = f'r = t.objects(mb={MB})\nresult = [len(r["items"]), r["items"][-1]]'
        out = await gw.client.call_tool("executeToolCode", {"code": code})
        assert text_of(out) == f'result = [{count}, {{"i": {count - 1}, "s": "x"}}]', text_of(out)[:300]


@pytest.mark.anyio
@pytest.mark.parametrize("way", ["direct", "script"])
async def test_checking_a_big_result_against_its_output_schema_does_not_hold_the_event_loop(
        ticked: Ticked, way: str) -> None:
    """The SDK client checked it on the loop: 175,000 objects held it 2.5-5.8 s. The gateway runs as its own
    process with a ticker, and the bound is the loop-stall test's (tests/gateway/test_loop_stall.py): relative to
    what `json.loads` of the same message takes this machine now, which the gateway also does in one go."""
    await held_about_a_parse(ticked, lambda: _call(ticked, way))
