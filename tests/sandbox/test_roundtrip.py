"""Property tests: JSON-like values cross the boundary unchanged, both ways, in real workers.

A tool result goes gateway -> frame -> worker -> Starlark -> `result` -> frame -> gateway;
arguments go the other way. "Unchanged" is strict: same types (1 is not 1.0 or True), the
sign of -0.0, every digit of a big int, every code point, the order of dict keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import Sandbox, ToolError

from .conftest import FAST

pytestmark = pytest.mark.anyio

# every code point but surrogates and NUL (see test_lone_surrogates_and_nul_become_fffd)
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
BIG = 10**300
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-BIG, max_value=BIG)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 1e-310])
    | TEXT
    | st.sampled_from(["\U0001f600", "\U0010ffff", "\u2028", "é", "\\", '"', "\n\t"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=24,
)
EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def strict(value: Any) -> str:
    """A text that differs whenever two values differ in anything JSON can say (types, -0.0, key order)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


class Returns:
    """A tool caller whose `util.value` returns whatever the test put in `value`, and `util.echo` its arguments."""

    def __init__(self) -> None:
        self.value: Any = None
        self.received: list[dict[str, Any]] = []

    async def __call__(self, name: str, args: dict[str, Any]) -> Any:
        self.received.append(args)
        if name == "util.value":
            return self.value
        if name == "util.echo":
            return args
        raise ToolError("no such tool")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(FAST, workers=1) as sb:
        yield sb


@pytest.fixture(scope="module")
def tools() -> Returns:
    return Returns()


async def _result(sandbox: Sandbox, tools: Returns, code: str) -> Any:
    run = await sandbox.run(code, ["util"], tools)
    assert run.error is None, run.error.format()
    return run.value


@EXAMPLES
@given(value=VALUES)
async def test_a_tool_result_comes_back_unchanged(sandbox: Sandbox, tools: Returns, value: Any) -> None:
    tools.value = value
    assert strict(await _result(sandbox, tools, "result = util.value()")) == strict(value)


@EXAMPLES
@given(value=VALUES)
async def test_arguments_arrive_unchanged(sandbox: Sandbox, tools: Returns, value: Any) -> None:
    """Through the script and out again: a tool result passed on as an argument, then returned."""
    tools.value = value
    tools.received.clear()
    out = await _result(sandbox, tools, "result = util.echo(v=util.value())")
    assert strict(tools.received[-1]) == strict({"v": value})
    assert strict(out) == strict({"v": value})


@EXAMPLES
@given(values=st.lists(VALUES, min_size=1, max_size=5))
async def test_parallel_results_come_back_unchanged_and_in_order(
    sandbox: Sandbox, tools: Returns, values: list[Any]
) -> None:
    tools.value = None
    code = "result = parallel([" + ", ".join(f'("util.echo", {{"i": {i}}})' for i in range(len(values))) + "])"
    assert await _result(sandbox, tools, code) == [{"i": i} for i in range(len(values))]
    tools.value = values
    assert strict(await _result(sandbox, tools, 'result = try_parallel([("util.value",)])')) == strict(
        [{"ok": True, "value": values}]
    )


@EXAMPLES
@given(value=VALUES)
async def test_json_helpers_agree_with_python(sandbox: Sandbox, tools: Returns, value: Any) -> None:
    tools.value = value
    text = await _result(sandbox, tools, "result = json_encode(util.value())")
    assert text == json.dumps(value, ensure_ascii=False)
    tools.value = text
    assert strict(await _result(sandbox, tools, "result = json_decode(util.value())")) == strict(value)


async def test_negative_zero_and_extreme_floats(sandbox: Sandbox, tools: Returns) -> None:
    tools.value = [-0.0, 5e-324, 1.7976931348623157e308]
    out = await _result(sandbox, tools, "v = util.value()\nresult = [v[0], v[1], v[2], -v[0], v[1] * 2]")
    assert math.copysign(1.0, out[0]) == -1.0 and math.copysign(1.0, out[3]) == 1.0
    assert out[1:3] == [5e-324, 1.7976931348623157e308] and out[4] == 1e-323


async def test_lone_surrogates_and_nul_become_fffd(sandbox: Sandbox, tools: Returns) -> None:
    """Neither can cross intact: a lone surrogate is not UTF-8, and starlark-go cuts a string at a NUL."""
    tools.value = {"a\ud800": ["\udfff", "ok \ud83d\ude00"], "n\x00": "a\x00b"}
    out = await _result(sandbox, tools, "v = util.value()\nresult = [v, len(list(v['n\ufffd'].codepoints()))]")
    assert out == [{"a\ufffd": ["\ufffd", "ok \ufffd\ufffd"], "n\ufffd": "a\ufffdb"}, 3]


async def test_a_nul_made_in_the_script_is_refused_not_cut(sandbox: Sandbox, tools: Returns) -> None:
    for code in ['result = "a\\x00b"', 'util.echo(v={"k\\x00": 1})', 'result = json_encode(["\\x00"])']:
        run = await sandbox.run(code, ["util"], tools)
        assert run.error is not None and "a string with a NUL character cannot leave the script" in run.error.message
    run = await sandbox.run('print("a\\x00b")', ["util"], tools)
    assert run.error is None and run.output == "a\ufffdb\n"


async def test_nesting_up_to_the_depth_limit_crosses(sandbox: Sandbox, tools: Returns) -> None:
    deepest: Any = 1
    for _ in range(FAST.max_depth):  # max_depth lists inside each other: the most allowed
        deepest = [deepest]
    tools.value = deepest
    assert await _result(sandbox, tools, "result = util.value()") == deepest
    run = await sandbox.run("result = [util.value()]", ["util"], tools)
    assert run.error is not None and "result: value nested deeper" in run.error.message
    tools.value = [deepest]
    run = await sandbox.run("result = util.value()", ["util"], tools)
    assert run.error is not None
    assert f"nested deeper than {FAST.max_depth} levels (limits.max_depth)" in run.error.message


async def test_an_int_too_long_for_json_is_an_error(sandbox: Sandbox, tools: Returns) -> None:
    tools.value = 10**5000
    run = await sandbox.run("result = util.value()", ["util"], tools)
    assert run.error is not None and run.error.kind == "tool"
    assert "util.value returned a value that cannot cross" in run.error.message


async def test_batch_results_are_cleaned_and_bounded_like_single_ones(sandbox: Sandbox, tools: Returns) -> None:
    """The gateway converts every result, batched or not, so the worker can take it as it comes."""
    tools.value = {"a\ud800": "n\x00"}
    out = await _result(sandbox, tools, 'result = [parallel([("util.value",)]), try_parallel([("util.value",)])]')
    assert out == [[{"a\ufffd": "n\ufffd"}], [{"ok": True, "value": {"a\ufffd": "n\ufffd"}}]]
    too_deep: Any = 1
    for _ in range(FAST.max_depth + 1):
        too_deep = [too_deep]
    tools.value = too_deep
    deeper = f"the result of util.value: value nested deeper than {FAST.max_depth} levels (limits.max_depth)"
    out = await _result(sandbox, tools, 'result = try_parallel([("util.value",)])')
    assert out == [{"ok": False, "error": deeper}]
    run = await sandbox.run('parallel([("util.value",)])', ["util"], tools)
    assert run.error is not None and run.error.kind == "tool"
    assert run.error.message == f"parallel: call 0 (util.value) failed: {deeper}"


async def test_tool_error_texts_are_cleaned_on_every_path(sandbox: Sandbox) -> None:
    """A tool's error text may hold a lone surrogate or a NUL; the script sees U+FFFD, whichever builtin it used."""

    async def failing(name: str, args: dict[str, Any]) -> Any:
        raise ToolError("bad \ud800 and \x00 end")

    code = 'result = [try_call("util.x"), try_parallel([("util.x",)])[0]]'
    run = await sandbox.run(code, ["util"], failing)
    assert run.error is None, run.error.format()
    assert run.value == [{"ok": False, "error": "bad \ufffd and \ufffd end"}] * 2
    for code in ["util.x()", 'parallel([("util.x",)])']:
        run = await sandbox.run(code, ["util"], failing)
        assert run.error is not None and run.error.kind == "tool", code
        assert run.error.message.endswith("bad \ufffd and \ufffd end"), run.error.message
