"""What a script can do and how it fails, run in real worker processes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sandbox import Sandbox, ScriptError

from .conftest import FAST, SERVERS, FakeTools

pytestmark = pytest.mark.anyio


async def test_two_servers_combined_into_result(sandbox: Sandbox, tools: FakeTools) -> None:
    code = (
        'w = weather.forecast(city="Oslo")\n'
        'total = calc.add(a=w["temps"][0], b=w["temps"][1])\n'
        'result = {"city": w["city"], "sum": total, "hottest": max(w["temps"])}\n'
    )
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None
    assert run.value == {"city": "Oslo", "sum": 25, "hottest": 14}
    assert run.tool_calls == 2
    assert tools.calls == [("weather.forecast", {"city": "Oslo"}), ("calc.add", {"a": 11, "b": 14})]


async def test_arguments_arrive_as_plain_values(sandbox: Sandbox, tools: FakeTools) -> None:
    code = 'result = util.echo(name="n", items=(1, [2, {"k": None}]), flag=True, f=0.5)'
    run = await sandbox.run(code, SERVERS, tools)
    assert run.value == {"name": "n", "items": [1, [2, {"k": None}]], "flag": True, "f": 0.5}


async def test_no_result_is_none(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("x = 1", SERVERS, tools)
    assert (run.error, run.value, run.output, run.tool_calls) == (None, None, "", 0)


async def test_print_is_captured(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('print("a", 1)\nprint("multi\\nline")', SERVERS, tools)
    assert run.output == "a 1\nmulti\nline\n"
    assert run.output_truncated_bytes == 0


async def test_print_is_cut_keeping_the_start(sandbox: Sandbox, tools: FakeTools) -> None:
    limits = replace(FAST, max_output_bytes=100)
    run = await sandbox.run('for i in range(50):\n    print("line %d" % i)', SERVERS, tools, limits)
    full = "".join(f"line {i}\n" for i in range(50))
    assert run.error is None
    assert run.output == full[:100]
    assert run.output_truncated_bytes == len(full) - 100


async def test_syntax_error_has_position_and_source(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("x = 1\n\ny = 2 ** 3\n", SERVERS, tools)
    assert run.error is not None
    assert (run.error.kind, run.error.line, run.error.source_line) == ("syntax", 3, "y = 2 ** 3")
    assert run.error.column is not None
    assert "**" in run.error.message
    text = run.error.format()
    assert text.startswith(f"SyntaxError at line 3, column {run.error.column}: got '**'")
    assert text.splitlines()[1] == "    y = 2 ** 3"
    assert text.splitlines()[2].endswith("^")


async def test_unknown_name_is_a_resolve_error(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("x = 1\ny = x + undefined_thing\n", SERVERS, tools)
    assert run.error is not None
    assert (run.error.kind, run.error.line, run.error.column) == ("resolve", 2, 9)
    assert run.error.message == "undefined: undefined_thing"


async def test_tool_reference_without_call_gets_a_hint(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("f = weather.forecast\n", SERVERS, tools)
    assert run.error is not None
    assert run.error.kind == "resolve"
    assert run.error.message == "weather.forecast must be called directly, e.g. weather.forecast(x=1)"
    run = await sandbox.run("x = nosuch.tool(a=1)\n", SERVERS, tools)
    assert run.error is not None
    assert "not a server; servers: calc, util, weather" in run.error.message


async def test_tool_error_stops_the_script_naming_the_tool(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('print("before")\nx = weather.broken(city="x")\nprint("after")', SERVERS, tools)
    assert run.error is not None
    assert run.error.kind == "tool"
    assert run.error.message == "weather.broken failed: upstream is down"
    assert (run.error.line, run.error.column) == (2, 19)
    assert run.output == "before\n"
    run = await sandbox.run("x = util.nothing()", SERVERS, tools)
    assert run.error is not None and run.error.message == "util.nothing: no such tool"


async def test_try_call_returns_the_error_as_a_value(sandbox: Sandbox, tools: FakeTools) -> None:
    code = 'bad = try_call("weather.broken", city="x")\ngood = try_call("calc.add", a=1, b=2)\nresult = [bad, good]\n'
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None
    assert run.value == [
        {"ok": False, "error": "weather.broken failed: upstream is down"},
        {"ok": True, "value": 3},
    ]
    assert run.tool_calls == 2


async def test_max_tool_calls(sandbox: Sandbox, tools: FakeTools) -> None:
    limits = replace(FAST, max_tool_calls=3)
    run = await sandbox.run("for i in range(10):\n    calc.add(a=i, b=1)\n", SERVERS, tools, limits)
    assert run.error is not None
    assert run.error.kind == "limit"
    assert "limit of 3 tool calls (limits.max_tool_calls)" in run.error.message
    assert run.tool_calls == 3 == len(tools.calls)


async def test_load_is_not_available(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('load("x", "y")\n', SERVERS, tools)
    assert run.error is not None
    assert run.error.kind == "runtime"
    assert "load" in run.error.message


async def test_big_ints_are_exact_both_ways(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("b = util.big()\nresult = [b, b - 1, 1 << 100]", SERVERS, tools)
    assert run.value == [2**200 + 1, 2**200, 2**100]
    run = await sandbox.run(f"result = util.echo(n={2**90})", SERVERS, tools)
    assert run.value == {"n": 2**90}


async def test_lone_surrogates_from_a_tool_do_not_crash(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('r = util.surrogate()\nresult = [r["text"], len(r)]', SERVERS, tools)
    assert run.error is None
    assert run.value == ["bad \ufffd half", 2]


async def test_json_helpers(sandbox: Sandbox, tools: FakeTools) -> None:
    code = (
        's = json_encode({"a": [1, 2.5, None, True], "b": (1, 2)})\n'
        "back = json_decode(s)\n"
        'result = [s, back, json_decode("[1, {\\"x\\": \\"y\\"}]")]\n'
    )
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None
    assert run.value == [
        '{"a": [1, 2.5, null, true], "b": [1, 2]}',
        {"a": [1, 2.5, None, True], "b": [1, 2]},
        [1, {"x": "y"}],
    ]
    run = await sandbox.run('x = json_decode("{nope")', SERVERS, tools)
    assert run.error is not None and run.error.message.startswith("json_decode: invalid JSON")


async def test_a_parameter_called_name_is_passed_through(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('result = util.echo(name="x", args=1, kwargs=2)', SERVERS, tools)
    assert run.value == {"name": "x", "args": 1, "kwargs": 2}


async def test_positional_arguments_are_refused(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("x = calc.add(1, 2)", SERVERS, tools)
    assert run.error is not None
    assert run.error.message == "calc.add takes keyword arguments only, e.g. calc.add(x=1)"
    assert tools.calls == []


async def test_values_that_cannot_leave_are_errors_not_crashes(sandbox: Sandbox, tools: FakeTools) -> None:
    pids = sandbox.worker_pids()
    cases = {
        "l = []\nl.append(l)\nutil.echo(v=l)": "value nested deeper than 64 levels",
        "util.echo(v={1: 2})": "dict key of type int",
        "def f():\n    pass\nresult = f": "a value of type function cannot leave the script",
        "d = {}\nd['self'] = d\nresult = d": "result: value nested deeper",
    }
    for code, fragment in cases.items():
        run = await sandbox.run(code, SERVERS, tools)
        assert run.error is not None and fragment in run.error.message, (code, run.error)
    assert sorted(sandbox.worker_pids()) == sorted(pids)


async def test_column_is_mapped_back_on_rewritten_lines(sandbox: Sandbox, tools: FakeTools) -> None:
    source = 'x = calc.add(a=1, b=2) + "s"'
    run = await sandbox.run(source, SERVERS, tools)
    assert run.error is not None
    assert run.error.message == "unknown binary op: int + string"
    assert run.error.column == source.index("+") + 1
    assert run.error.source_line == source


async def test_error_in_a_function_points_at_the_failing_line(sandbox: Sandbox, tools: FakeTools) -> None:
    code = "def get(c):\n    return weather.broken(city=c)\n\nresult = get('x')\n"
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is not None
    assert (run.error.kind, run.error.line, run.error.source_line) == ("tool", 2, "    return weather.broken(city=c)")


async def test_a_caller_that_raises_unexpectedly_fails_the_call(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run("util.crash()", SERVERS, tools)
    assert run.error is not None
    assert run.error.message == "util.crash failed: KeyError: 'oops'"


async def test_size_limits(sandbox: Sandbox, tools: FakeTools) -> None:
    limits = replace(FAST, max_source_bytes=50, max_result_bytes=1000)
    run = await sandbox.run("x = 1\n" * 20, SERVERS, tools, limits)
    assert run.error is not None and "over the limit of 50 bytes (limits.max_source_bytes)" in run.error.message
    run = await sandbox.run('result = "x" * 2000', SERVERS, tools, limits)
    assert run.error is not None and run.error.kind == "limit"
    assert "(limits.max_result_bytes)" in run.error.message
    run = await sandbox.run('util.echo(s="x" * 2000)', SERVERS, tools, limits)
    assert run.error is not None and "arguments of util.echo are" in run.error.message
    assert tools.calls == []


async def test_globals_can_be_reassigned_and_loops_run_at_top_level(sandbox: Sandbox, tools: FakeTools) -> None:
    code = "n = 0\nfor i in range(5):\n    n += i\nwhile n < 100:\n    n = n * 2\nresult = n\n"
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None and run.value == 160


async def test_print_takes_sep_and_any_values(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('print("a", 1, [2], None, sep="-")\nprint()', SERVERS, tools)
    assert run.output == "a-1-[2]-None\n\n"


async def test_invalid_utf8_strings_fail_cleanly(sandbox: Sandbox, tools: FakeTools) -> None:
    pids = sorted(sandbox.worker_pids())
    for code in ['print("é"[0:1])', 'result = "é"[0:1]', 'util.echo(s="é"[0:1])']:
        run = await sandbox.run(code, SERVERS, tools)
        assert run.error is not None and "not valid UTF-8" in run.error.message, code
    assert sorted(sandbox.worker_pids()) == pids  # no worker crashed
    run = await sandbox.run('result = list("é".codepoints())[0]', SERVERS, tools)
    assert run.value == "é"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ('fail("é"[0:1])', "fail: \ufffd"),
        ('fail("ok", "é"[0:1] + "x", 3, sep="|")', "fail: ok|\ufffdx|3"),
        ('x = 1\nfail("a\\x00b", [1])', "fail: a\ufffdb [1]"),
        ("fail()", "fail: "),
    ],
    ids=["cut-character", "with-sep", "nul", "empty"],
)
async def test_fail_with_any_message_is_a_clean_error(
    sandbox: Sandbox, tools: FakeTools, code: str, message: str
) -> None:
    """starlark-go cannot raise an error whose text is not UTF-8; bad bytes become U+FFFD instead."""
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is not None and (run.error.kind, run.error.message) == ("runtime", message)
    assert run.error.line == code.count("\n") + 1


async def test_a_long_fail_message_is_cut_with_its_full_length(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('fail("é" * 3000 + "x" * 100000)', SERVERS, tools)
    assert run.error is not None and run.error.message == "fail: " + "é" * 1994 + "... (101006 more characters)"


async def test_an_error_naming_an_invalid_string_is_a_clean_error(sandbox: Sandbox, tools: FakeTools) -> None:
    """Other errors can quote a string raw too (an attribute name): starlark-go's binding then fails itself."""
    pids = sorted(sandbox.worker_pids())
    run = await sandbox.run('x = getattr(1, "é"[0:1])', SERVERS, tools)
    assert run.error is not None and run.error.kind == "runtime"
    assert run.error.message.startswith("the script stopped with an error whose message is not valid UTF-8")
    assert "TypeError" not in run.error.message and "__init__" not in run.error.message
    assert sorted(sandbox.worker_pids()) == pids


async def test_lone_surrogate_in_the_source(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('result = "a\ud800"', SERVERS, tools)
    assert run.error is None and run.value == "a\ufffd"


async def test_sandbox_internals_are_out_of_reach(sandbox: Sandbox, tools: FakeTools) -> None:
    attempts = ['_sb_call("calc.add", {"a": 1, "b": 2})', "x = 1\n_sb_max_depth = 10\n", "def _sb_check(v):\n    pass"]
    for code in attempts:
        run = await sandbox.run(code, SERVERS, tools)
        assert run.error is not None and run.error.kind == "resolve", code
        assert "names starting with _sb_ are reserved for the sandbox" in run.error.message
    assert tools.calls == []
    run = await sandbox.run('x = "_sb_ in a string"  # and _sb_ in a comment\nresult = x', SERVERS, tools)
    assert run.value == "_sb_ in a string"


async def test_a_carriage_return_does_not_hide_reserved_names(sandbox: Sandbox, tools: FakeTools) -> None:
    """Python's tokenizer reads `# c\r_sb_fail(...)` as one comment; Starlark ends the line at the CR."""
    for newline in ("\r", "\r\n"):
        run = await sandbox.run(f'# a comment{newline}_sb_fail("x", "a-new-kind"){newline}result = 1', SERVERS, tools)
        assert run.error is not None and run.error.kind == "resolve", repr(newline)
        assert "reserved for the sandbox" in run.error.message
    run = await sandbox.run('x = 1\r\nresult = x + 1\r\n', SERVERS, tools)
    assert run.error is None and run.value == 2


def test_an_unknown_error_kind_from_a_worker_counts_as_runtime() -> None:
    assert ScriptError.from_dict({"kind": "kind-1234", "message": "m"}).kind == "runtime"
    assert ScriptError.from_dict({"kind": "limit", "message": "m"}).kind == "limit"


async def test_a_script_may_define_its_own_helpers_with_builtin_names(sandbox: Sandbox, tools: FakeTools) -> None:
    code = (
        "def call_tool(*a, **k):\n    return 'mine'\n"
        "def _plain(v):\n    return v\n"
        "_max_depth = 1\n"
        "result = [calc.add(a=1, b=2), call_tool('x'), [[[1]]]]\n"
    )
    run = await sandbox.run(code, SERVERS, tools)
    assert run.error is None, run.error
    assert run.value == [3, "mine", [[[1]]]]


async def test_a_server_used_as_a_value_gets_a_hint(sandbox: Sandbox, tools: FakeTools) -> None:
    run = await sandbox.run('f = getattr(calc, "add")', SERVERS, tools)
    assert run.error is not None
    assert run.error.message == "undefined: calc (a server is not a value: call its tools as calc.<tool>(x=1))"


async def test_shared_structure_is_bounded_before_conversion(sandbox: Sandbox, tools: FakeTools) -> None:
    # 2**30 leaves reachable through 30 shared lists: refused by size, not by running out of time
    limits = replace(FAST, max_result_bytes=100_000)
    run = await sandbox.run("l = [1]\nfor i in range(30):\n    l = [l, l]\nresult = l", SERVERS, tools, limits)
    assert run.error is not None and run.error.kind == "limit"
    assert run.error.message == "result: value is larger than 100000 bytes as JSON (limits.max_result_bytes)"


async def test_one_huge_print_is_cut_without_a_copy_of_it_all(sandbox: Sandbox, tools: FakeTools) -> None:
    limits = replace(FAST, max_output_bytes=10)
    run = await sandbox.run('print("é" * 3000000)\nprint("x" * 20000000)', SERVERS, tools, limits)
    assert run.error is None
    assert run.output == "ééééé"
    assert run.output_truncated_bytes == 6_000_001 - 10 + 20_000_001
