"""Checking a call's arguments against the tool's own input schema."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp_gateway import catalog
from mcp_gateway.catalog import ToolEntry
from mcp_gateway.errors import InvalidArguments
from mcp_gateway.validation import MAX_PROBLEMS, Validators, argument_names
from stubs import assign_identifiers

ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


def entry(server: str, name: str, schema: dict[str, Any], direct_name: str | None = None) -> ToolEntry:
    tool = types.Tool(name=name, input_schema=schema)
    return catalog._entry(server, tool, assign_identifiers([name])[name], direct_name)


def problems(validators: Validators, e: ToolEntry, args: dict[str, Any]) -> str:
    with pytest.raises(InvalidArguments) as info:
        validators.check_now(e, args)
    return str(info.value)


def test_valid_arguments_pass() -> None:
    validators = Validators()
    validators.check_now(entry("math", "add", ADD), {"a": 1, "b": 2})
    validators.check_now(entry("math", "add_open", {**ADD, "additionalProperties": True}), {"a": 1, "b": 2, "c": 3})


GIT_LOG = {"type": "object", "properties": {"repo_path": {"type": "string"}, "max_count": {"type": "integer"}},
           "required": ["repo_path"]}


def test_an_argument_the_tool_does_not_take_is_refused_with_the_closest_name() -> None:
    validators = Validators()
    assert problems(validators, entry("git", "git_log", GIT_LOG), {"repo_path": ".", "max_cont": 1}) == (
        "unexpected keyword argument 'max_cont' for git.git_log; did you mean 'max_count'?")
    assert problems(validators, entry("git", "git_log", GIT_LOG, direct_name="git_git_log"), {"zzz": 1}) == (
        "unexpected keyword argument 'zzz' for git_git_log; it takes repo_path, max_count")
    echo = entry("e", "echo", {"type": "object", "properties": {"message": {"type": "string"}}})
    assert problems(validators, echo, {"message": "x", "msg": "y", "zzz": "z"}) == (
        "unexpected keyword arguments for e.echo: 'msg' (did you mean 'message'?), 'zzz'")
    assert problems(validators, entry("t", "now", {"type": "object"}), {"tz": "UTC"}) == (
        "unexpected keyword argument 'tz' for t.now; t.now takes no arguments")


def test_the_closest_name_is_the_one_the_caller_writes() -> None:
    """A script writes the stub's identifier (`sort_by`), a direct call the schema's name (`sort-by`)."""
    schema = {"type": "object", "properties": {"sort-by": {"type": "string"}, "from": {"type": "integer"}}}
    validators = Validators()
    assert problems(validators, entry("s", "t", schema), {"sortby": "x"}).endswith("did you mean 'sort_by'?")
    assert problems(validators, entry("s", "t", schema, "s_t"), {"sortby": "x"}).endswith("did you mean 'sort-by'?")
    validators.check_now(entry("s", "t", schema), entry("s", "t", schema).upstream_arguments({"sort_by": "x",
                                                                                               "from_": 1}))


@pytest.mark.parametrize("extra", [
    {"additionalProperties": True},
    {"additionalProperties": {"type": "string"}},
    {"patternProperties": {"^x-": {}}},
    {"unevaluatedProperties": {}},
    {"allOf": [{"$ref": "#/$defs/open"}], "$defs": {"open": {"additionalProperties": {}}}},
])
def test_a_schema_that_allows_other_properties_takes_them(extra: dict[str, Any]) -> None:
    Validators().check_now(entry("s", "t", {**GIT_LOG, **extra}), {"repo_path": ".", "x-anything": "ok"})


def test_names_from_refs_and_composition_are_known() -> None:
    schema = {
        "$defs": {"Page": {"properties": {"cursor": {"type": "string"}}}},
        "allOf": [{"$ref": "#/$defs/Page"}, {"properties": {"q": {"type": "string"}}}],
        "oneOf": [{"properties": {"id": {}}, "required": ["id"]}, {"required": ["name"]}],
    }
    validators, e = Validators(), entry("s", "t", schema)
    validators.check_now(e, {"cursor": "c", "q": "x", "id": 1})
    validators.check_now(e, {"name": "n"})
    assert problems(validators, e, {"name": "n", "curser": "c"}).endswith("did you mean 'cursor'?")
    assert argument_names({"$ref": "other.json#/x"}) is None  # a reference not followed: its names are unknown


def test_unexpected_names_are_reported_before_schema_problems() -> None:
    """Like Python's TypeError: a misspelt required argument names the misspelling, not only the missing one."""
    message = problems(Validators(), entry("math", "add", ADD), {"a": 1, "bb": 2})
    assert message == "unexpected keyword argument 'bb' for math.add; did you mean 'b'?"


def test_a_problem_is_named_with_its_field() -> None:
    message = problems(Validators(), entry("math", "add", ADD), {"a": "two", "b": 2})
    assert message == "invalid arguments for math.add: a: 'two' is not of type 'integer'"


def test_every_problem_is_named_up_to_the_limit() -> None:
    message = problems(Validators(), entry("math", "add", ADD), {"a": "two"})
    assert message.startswith("invalid arguments for math.add: ")
    assert sorted(message.removeprefix("invalid arguments for math.add: ").split("; ")) == [
        "'b' is a required property", "a: 'two' is not of type 'integer'"]


def test_nested_paths_are_dotted() -> None:
    schema = {
        "type": "object",
        "properties": {
            "point": {"type": "object", "properties": {"x": {"type": "number"}}},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    message = problems(Validators(), entry("geo", "move", schema), {"point": {"x": "far"}, "tags": ["a", 3]})
    assert set(message.removeprefix("invalid arguments for geo.move: ").split("; ")) == {
        "point.x: 'far' is not of type 'number'", "tags.1: 3 is not of type 'string'"}


def test_at_most_max_problems_are_named() -> None:
    fields = [f"f{i}" for i in range(MAX_PROBLEMS + 3)]
    schema = {"type": "object", "properties": {f: {"type": "integer"} for f in fields}}
    message = problems(Validators(), entry("s", "t", schema), {f: "x" for f in fields})
    named = message.removeprefix("invalid arguments for s.t: ").split("; ")
    assert len(named) == MAX_PROBLEMS
    assert all(p.endswith("'x' is not of type 'integer'") for p in named)


def test_the_message_uses_the_name_the_caller_knows() -> None:
    validators = Validators()
    assert problems(validators, entry("math", "get-client", ADD), {}).startswith(
        "invalid arguments for math.get_client: ")  # the script identifier
    assert problems(validators, entry("math", "add", ADD, direct_name="math_add"), {}).startswith(
        "invalid arguments for math_add: ")  # the direct-mode name


def test_the_tools_own_dialect_is_used() -> None:
    pair = {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]}  # draft-07 tuple form
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"p": pair}}
    message = problems(Validators(), entry("s", "t", draft7), {"p": [1, 2]})
    assert message == "invalid arguments for s.t: p.1: 2 is not of type 'string'"


def test_an_invalid_upstream_schema_means_no_validation() -> None:
    validators = Validators()
    broken = entry("s", "t", {"type": "object", "properties": {"a": {"type": "nonsense"}}})
    validators.check_now(broken, {"a": "anything"})
    validators.check_now(broken, {"a": 1})
    # the same array-of-schemas `items` without a draft-07 `$schema` is invalid under 2020-12
    tuple_2020 = {"type": "object", "properties": {"p": {"type": "array", "items": [{"type": "string"}]}}}
    validators.check_now(entry("s", "u", tuple_2020), {"p": [1]})


def test_validators_are_kept_per_tool_until_cleared() -> None:
    validators = Validators()
    before = entry("s", "t", {"type": "object", "properties": {"a": {"type": "integer"}}})
    after = entry("s", "t", {"type": "object", "properties": {"a": {"type": "string"}}})
    validators.check_now(before, {"a": 1})
    validators.check_now(after, {"a": 1})  # the first schema's validator is still in use
    validators.clear()
    validators.check_now(after, {"a": "one"})
    assert problems(validators, after, {"a": 1}) == "invalid arguments for s.t: a: 1 is not of type 'string'"


def test_validators_are_per_server() -> None:
    validators = Validators()
    validators.check_now(entry("one", "t", {"type": "object", "properties": {"a": {"type": "integer"}}}), {"a": 1})
    two = entry("two", "t", {"type": "object", "properties": {"a": {"type": "string"}}})
    assert problems(validators, two, {"a": 1}) == "invalid arguments for two.t: a: 1 is not of type 'string'"


UNIQUE = {"type": "object", "properties": {"items": {"type": "array", "uniqueItems": True}}}


def test_unique_items_follows_json_schema_equality() -> None:
    validators, e = Validators(), entry("s", "u", UNIQUE)
    validators.check_now(e, {"items": [1, True, "1", [1], {"a": 1}, {"a": True}, None, 0, False]})
    for repeated in ([1, 1.0], [{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}], [[1, {"x": None}], [1, {"x": None}]]):
        assert "has non-unique elements (item 1 repeats an earlier one)" in problems(validators, e, {"items": repeated})


def test_unique_items_on_many_objects_is_linear() -> None:
    """jsonschema compares object items pairwise: 20,000 of them took 33 s on the event loop."""
    validators, e = Validators(), entry("s", "u", UNIQUE)
    many = [{"id": i, "tags": [i, str(i)]} for i in range(150_000)]
    started = time.perf_counter()
    validators.check_now(e, {"items": many})
    assert "item 150000 repeats" in problems(validators, e, {"items": [*many, {"tags": [7, "7"], "id": 7}]})
    assert time.perf_counter() - started < 10  # quadratic work would take hours


def test_a_problem_quoting_a_huge_value_is_cut() -> None:
    message = problems(Validators(), entry("math", "add", ADD), {"a": "x" * 100_000, "b": 1})
    assert len(message) < 400 and message.endswith("…")


@pytest.mark.anyio
async def test_validation_runs_off_the_event_loop() -> None:
    """(The test process's own heap is frozen first, as `mcp-gateway serve` does after its imports: a full
    garbage collection of pytest's objects would otherwise stall the loop whatever validation does.)"""
    gc.freeze()
    validators, e = Validators(), entry("s", "u", UNIQUE)
    many = {"items": [{"id": i, "name": f"n{i}"} for i in range(200_000)]}
    started = time.perf_counter()
    worst = await worst_gap_s(validators.check(e, many))
    took = time.perf_counter() - started
    gc.unfreeze()
    assert took > 0.2, "the work is big enough to show a blocked loop"
    assert worst < 0.1, f"the loop stalled {worst:.3f} s while validation took {took:.3f} s"


async def worst_gap_s(work: Awaitable[object]) -> float:
    """The longest the event loop went without running a task that ticks every 5 ms, while `work` ran."""
    gaps: list[float] = [0.0]

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await anyio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        await anyio.sleep(0.01)
        await work
        tg.cancel_scope.cancel()
    return max(gaps)


def test_a_ref_to_another_document_is_never_fetched() -> None:
    """jsonschema would fetch `other.json` (or a URL) with urllib: an upstream's schema could make us call out."""
    schema = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/other.json#/x"}}}
    e = entry("s", "r", schema)
    started = time.perf_counter()
    Validators().check_now(e, {"a": 1})  # not checked here (the upstream checks it), and no request made
    assert time.perf_counter() - started < 1
