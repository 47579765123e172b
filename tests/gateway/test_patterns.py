"""Regular expressions of tool schemas (`pattern`, `patternProperties`) are matched with a time limit, off the
event loop: both the schema (from an upstream) and the value (from a caller or an upstream) may be hostile, and
`re`'s backtracking held the whole gateway (`^(a+)+$` against 25 `a`s and a `!`: 4.6 s, doubling per `a`)."""

from __future__ import annotations

import time
from typing import Any

import mcp_types as types
import pytest

from mcp_gateway.errors import InvalidArguments, InvalidOutput
from mcp_gateway.patterns import MATCH_TIMEOUT_S, uses_patterns
from mcp_gateway.validation import Validators
from tests.gateway.test_validation import entry, worst_gap_s

pytestmark = pytest.mark.anyio
EVIL = "^(a|aa)+$"  # exponential backtracking in `re` and in `regex` alike
SLOW = "a" * 34 + "!"  # `re`: about 1 s, and 1.6 times that with each more `a`


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def test_patterns_match_as_before() -> None:
    validators = Validators()
    tool = entry("s", "t", schema(code={"type": "string", "pattern": "^[A-Z]{3}$"}))
    validators.check_now(tool, {"code": "ABC"})
    with pytest.raises(InvalidArguments, match="'abc' does not match '\\^\\[A-Z\\]\\{3\\}\\$'"):
        validators.check_now(tool, {"code": "abc"})


def test_a_match_that_does_not_end_in_time_refuses_the_value() -> None:
    validators = Validators()
    started = time.perf_counter()
    with pytest.raises(InvalidArguments, match=f"took over {MATCH_TIMEOUT_S:g} s"):
        validators.check_now(entry("s", "t", schema(s={"type": "string", "pattern": EVIL})), {"s": "a" * 40 + "!"})
    assert time.perf_counter() - started < 2


def test_property_names_are_matched_in_time_too() -> None:
    validators = Validators()
    tool = entry("s", "t", {"type": "object", "patternProperties": {EVIL: {"type": "integer"}},
                            "additionalProperties": False})
    validators.check_now(tool, {"aaa": 1})
    with pytest.raises(InvalidArguments) as refused:
        validators.check_now(tool, {"a" * 40 + "!": 1})
    assert "took over" in str(refused.value) or "not allowed" in str(refused.value)


def test_schemas_with_patterns_are_checked_off_the_event_loop() -> None:
    assert uses_patterns({"properties": {"x": {"items": [{"pattern": "a"}]}}})
    assert not uses_patterns(schema(x={"type": "string"}))


async def test_a_hostile_pattern_does_not_hold_the_event_loop() -> None:
    validators = Validators()
    args_tool = entry("s", "t", schema(s={"type": "string", "pattern": EVIL}))
    out_tool = entry("s", "o", {"type": "object"})
    out_tool.tool.output_schema = schema(s={"type": "string", "pattern": EVIL})

    async def both() -> None:
        with pytest.raises(InvalidArguments):
            await validators.check(args_tool, {"s": SLOW})
        with pytest.raises(InvalidOutput):
            await validators.check_result(out_tool, types.CallToolResult(content=[], structured_content={"s": SLOW}))

    worst = await worst_gap_s(both())
    assert worst < 0.1, f"the event loop was held {worst * 1000:.0f} ms"
