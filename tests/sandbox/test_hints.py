"""Errors that point to the fix: Python that Starlark lacks, direct-mode servers, call results in a batch."""

from __future__ import annotations

import pytest

from sandbox import Sandbox
from sandbox.rewrite import direct_tool, rewrite, split_servers

from .conftest import SERVERS, FakeTools

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("code", "starts", "column"),
    [
        ("try:\n    x = 1\nexcept:\n    pass\n", 'Starlark has no try/except: try_call("server.tool", arg=value)', 1),
        ("import json\n", "Starlark has no import: ", 1),
        ("x = 1\nfrom json import loads\n", "Starlark has no import: ", 1),
        ('n = 1\nprint(f"{n} items")\n', 'Starlark has no f-strings: write "%s has %d items" % (name, n) or', 7),
        ('x = rf"a{1}"\n', "Starlark has no f-strings", 5),
        ("x = None\nif x is None:\n    pass\n", "Starlark has no is operator: compare with ==", 6),
        ("class A:\n    pass\n", "Starlark has no classes", 1),
        ("raise ValueError('no')\n", 'Starlark has no raise: stop the script with fail("message")', 1),
        ("def f():\n    yield 1\n", "Starlark has no generators", 5),
    ],
)
async def test_python_that_starlark_lacks_is_named_with_the_starlark_way(
    sandbox: Sandbox, tools: FakeTools, code: str, starts: str, column: int
) -> None:
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is not None and run.error.kind == "syntax"
    assert run.error.message.startswith(starts), run.error.message
    assert "(parser: got " in run.error.message  # the parser's own words are kept
    assert run.error.column == column
    assert tools.calls == []


async def test_other_syntax_errors_are_as_the_parser_says(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('x = "f"\ny = (1 +\n', SERVERS, tools)
    assert run.error is not None and run.error.message.startswith("got ")


async def test_a_direct_mode_server_is_named_as_such(sandbox: Sandbox, tools: FakeTools) -> None:
    servers = [*SERVERS, direct_tool("time.get_current_time", "time_get_current_time"),
               direct_tool("time.convert_time", "time_convert_time")]
    run = await sandbox.run('r = time.get_current_time(timezone="UTC")', servers, tools)
    assert run.error is not None and run.error.kind == "resolve"
    assert run.error.message == (
        "time is in direct mode: its tools are not in scripts; call them directly (time_get_current_time), "
        'or set mode = "code" for time in the gateway config')
    run = await sandbox.run("r = time.nope()\nx = nosuch.tool()", servers, tools)
    assert run.error is not None
    assert "call them directly (time_convert_time, time_get_current_time)" in run.error.message
    assert "undefined: nosuch (not a server; servers: calc, util, weather)" in run.error.message  # not `time`


def test_direct_mode_tools_are_not_servers_to_the_rewrite() -> None:
    servers = ["gh", direct_tool("time.now", "time_now")]
    assert split_servers(servers) == (["gh"], {"time": {"now": "time_now"}})
    assert rewrite("x = time.now()", servers) == "x = time.now()"


async def test_a_call_written_into_parallel_runs_nothing_and_shows_the_pair(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("result = parallel([calc.add(a=1, b=2), calc.add(a=3, b=4)])", SERVERS, tools)
    assert run.error is not None
    assert run.error.message == ('parallel takes ("server.tool", {arguments}) pairs, not the results of calls: '
                                 'write parallel([("calc.add", {"a": 1, "b": 2})])')
    assert tools.calls == [] and run.tool_calls == 0
    run = await sandbox.run('result = try_parallel([weather.forecast(city=c) for c in ["Oslo"]])', SERVERS, tools)
    assert run.error is not None
    assert 'write try_parallel([("weather.forecast", {"city": "Oslo"})])' in run.error.message
    assert tools.calls == []


async def test_a_call_result_given_to_parallel_is_named_as_one(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('r = util.echo(text="The sum of 1 and 2 is 3.")\nresult = parallel([r["text"]])',
                            SERVERS, tools)
    assert run.error is not None
    assert run.error.message == (
        "parallel: item 0 is not a tool name but the text \"The sum of 1 and 2 is 3.\"; parallel takes "
        '("server.tool", {"arg": value}) pairs, not the results of calls: write parallel([("server.tool", '
        '{"arg": value})])')
    run = await sandbox.run("total = calc.add(a=1, b=2)\nresult = try_parallel([total])", SERVERS, tools)
    assert run.error is not None
    assert "try_parallel: item 0 is not a (\"server.tool\", {...}) pair but a int" in run.error.message
    assert "not the results of calls" in run.error.message


async def test_calls_that_build_a_batch_still_run(sandbox: Sandbox, tools: FakeTools) -> None:
    """Only a call that is a whole item of the batch is refused; one inside an item, or combined, runs."""
    code = (
        'result = parallel([("calc.add", {"a": calc.add(a=1, b=1), "b": 1}) for _ in range(2)])\n'
        'result += parallel(calc.add(a=0, b=1) * [("calc.add", {"a": 5, "b": 5})])\n'
    )
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None, run.error
    assert run.value == [3, 3, 10]
    assert len(tools.calls) == 6


async def test_a_script_of_its_own_parallel_keeps_it(sandbox: Sandbox, tools: FakeTools) -> None:
    code = "def parallel(xs):\n    return xs\nresult = parallel([calc.add(a=1, b=2)])"
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None and run.value == [3]
