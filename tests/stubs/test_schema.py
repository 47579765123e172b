"""JSON Schema to compact Python type expressions."""

from __future__ import annotations

import ast
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stubs.refs import resolve_ref
from stubs.schema import accepts_null, py_literal, type_expr


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "str"),
        ({"type": "integer"}, "int"),
        ({"type": "number"}, "float"),
        ({"type": "boolean"}, "bool"),
        ({"type": "null"}, "None"),
        ({}, "Any"),
        (True, "Any"),
        ({"description": "no type"}, "Any"),
        ({"type": "unknown"}, "Any"),
        ({"type": "array"}, "list"),
        ({"type": "array", "items": {"type": "string"}}, "list[str]"),
        ({"type": "array", "items": {}}, "list"),
        ({"type": "array", "items": [{"type": "string"}]}, "list"),
        ({"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}, "list[list[int]]"),
        ({"type": "array", "items": {"type": "object", "properties": {"a": {}}}}, "list[dict]"),
        ({"type": "object"}, "dict"),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, "dict"),
        ({"properties": {"a": {"type": "string"}}}, "dict"),
        ({"items": {"type": "integer"}}, "list[int]"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "dict[str, str]"),
        ({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}},
         "dict[str, list[float]]"),
        ({"type": "object", "additionalProperties": True}, "dict"),
        ({"type": "object", "additionalProperties": {}}, "dict"),
        ({"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "string"}}, "dict"),
        ({"type": ["string", "null"]}, "str | None"),
        ({"type": ["null", "string"]}, "str | None"),
        ({"type": ["string", "number", "boolean", "null"]}, "str | float | bool | None"),
        ({"type": ["string", "number", "boolean", "array", "null"]}, "Any"),
        ({"type": "string", "nullable": True}, "str | None"),
        ({"enum": ["a", "b"]}, 'Literal["a", "b"]'),
        ({"type": "string", "enum": ["a", None]}, 'Literal["a"] | None'),
        ({"enum": [1, 2.5, True, None]}, "Literal[1, 2.5, True] | None"),
        ({"enum": ['say "hi"', "it's", "back\\slash"]}, r'Literal["say \"hi\"", "it' + "'" + r's", "back\\slash"]'),
        ({"enum": [[1], {"a": 1}]}, "list | dict"),
        ({"enum": [f"v{i}" for i in range(11)]}, "str"),
        ({"enum": [f"v{i}" for i in range(10)]}, "Literal[" + ", ".join(f'"v{i}"' for i in range(10)) + "]"),
        ({"enum": []}, "Any"),
        ({"const": "x"}, 'Literal["x"]'),
        ({"const": None}, "None"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "str | None"),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}, {"type": "string"}]}, "int | str | None"),
        ({"oneOf": [{"type": "string"}, {"type": "string", "minLength": 1}]}, "str"),
        ({"anyOf": [{"const": "a"}, {"const": "b"}, {"type": "integer"}]}, 'Literal["a", "b"] | int'),
        ({"anyOf": [{"type": "string"}, {"const": "a"}]}, 'Literal["a"] | str'),
        ({"anyOf": [{"type": t} for t in ("string", "integer", "boolean", "array", "object")]}, "Any"),
        ({"anyOf": [{"type": "string"}, {}]}, "Any"),
        ({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, "dict"),
        ({"allOf": [{"type": "string"}]}, "str"),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, "str"),
        ({"allOf": [{"type": "object", "properties": {"a": {}}}, {"type": "object", "properties": {"b": {}}}]}, "dict"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "dict"),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True}, "str | int | None"),
    ],
)
def test_type_expr(schema: dict[str, Any] | bool, expected: str) -> None:
    root = schema if isinstance(schema, dict) else {}
    assert type_expr(schema, root) == expected
    ast.parse(expected, mode="eval")


ROOT: dict[str, Any] = {
    "$defs": {
        "Point": {"type": "object", "properties": {"x": {"type": "number"}}},
        "Name": {"type": "string"},
        "Tree": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}}},
        "Ping": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Pong"}]},
        "Pong": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/Ping"}]},
        "Ids": {"type": "array", "items": {"$ref": "#/$defs/Name"}},
        "a/b~c": {"type": "boolean"},
    },
    "definitions": {"Old": {"type": "integer"}},
    "properties": {"start": {"type": "string", "format": "date"}},
}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("#/$defs/Point", "dict"),
        ("#/$defs/Name", "str"),
        ("#/$defs/Ids", "list[str]"),
        ("#/definitions/Old", "int"),
        ("#/properties/start", "str"),
        ("#/$defs/a~1b~0c", "bool"),
        ("#/$defs/Missing", "Any"),
        ("https://example.com/schema.json", "Any"),
        ("#/$defs/Ping", "str | int | dict"),
    ],
)
def test_refs(ref: str, expected: str) -> None:
    assert type_expr({"$ref": ref}, ROOT) == expected


def test_recursive_ref_renders_dict_instead_of_recursing() -> None:
    tree_list = {"type": "array", "items": {"$ref": "#/$defs/Tree"}}
    assert type_expr(tree_list, ROOT) == "list[dict]"
    self_list: dict[str, Any] = {"type": "array", "items": {"$ref": "#"}}
    assert type_expr(self_list, self_list) == "list[list[dict]]"


def test_nullable_ref_and_ref_inside_union() -> None:
    assert type_expr({"$ref": "#/$defs/Name", "nullable": True}, ROOT) == "str | None"
    assert type_expr({"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]}, ROOT) == "dict | None"


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    assert type_expr(schema, schema).startswith("list[list[")


def test_resolve_ref() -> None:
    assert resolve_ref("#", ROOT) is ROOT
    assert resolve_ref("#/$defs/Name", ROOT) == {"type": "string"}
    assert resolve_ref("#/$defs/Ping/anyOf/0", ROOT) == {"type": "string"}
    assert resolve_ref("#/$defs/Ping/anyOf/9", ROOT) is None
    assert resolve_ref("#/$defs/Name/type", ROOT) is None  # a string is not a schema


NULLS: dict[str, Any] = {
    "$defs": {
        "O": {"type": "integer"},
        "N": {"type": ["integer", "null"]},
        "Loop": {"anyOf": [{"$ref": "#/$defs/Loop"}, {"type": "string"}]},
    },
}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer"}, False),
        ({"type": "null"}, True),
        ({"type": ["string", "null"]}, True),
        ({"type": ["string", "null"], "enum": ["a", "b"]}, False),  # the enum leaves null out
        ({"enum": ["a", None]}, True),
        ({"enum": [None]}, True),
        ({"enum": ["a"]}, False),
        ({"const": None}, True),
        ({"const": 0}, False),
        ({"$ref": "#/$defs/O"}, False),
        ({"$ref": "#/$defs/N"}, True),
        ({"$ref": "#/$defs/O", "nullable": True}, True),
        ({"$ref": "#/$defs/Missing"}, True),  # unknown: let the upstream decide
        ({"$ref": "#/$defs/Loop"}, True),  # a cycle cannot be told either: sent as it is
        ({"allOf": [{"$ref": "#/$defs/O"}], "description": "pydantic wraps refs like this"}, False),
        ({"allOf": [{"$ref": "#/$defs/N"}, {"description": "only words"}]}, True),
        ({"anyOf": [{"$ref": "#/$defs/O"}, {"type": "null"}]}, True),
        ({"anyOf": [{"$ref": "#/$defs/O"}, {"type": "string"}]}, False),
        ({"oneOf": [{"type": "string"}, {"enum": [None]}]}, True),
        ({}, True),
        (True, True),
        (False, False),
        ({"type": 7}, True),
    ],
)
def test_accepts_null(schema: dict[str, Any] | bool, expected: bool) -> None:
    assert accepts_null(schema, NULLS) is expected


def test_accepts_null_judges_a_shared_definition_once() -> None:
    """20 levels each naming the next four times: walked path by path that is 4**16 visits."""
    defs: dict[str, Any] = {f"D{i}": {"anyOf": [{"$ref": f"#/$defs/D{i + 1}"}] * 4} for i in range(20)}
    defs["D20"] = {"type": "integer"}
    assert accepts_null({"$ref": "#/$defs/D10"}, {"$defs": defs}) is False
    assert accepts_null({"$ref": "#/$defs/D0"}, {"$defs": defs}) is True  # deeper than MAX_DEPTH: unknown


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "None"),
        (True, "True"),
        (3, "3"),
        (2.5, "2.5"),
        (float("inf"), 'float("inf")'),
        ('a "b" \\ c\n', r'"a \"b\" \\ c\n"'),
        ("é", '"é"'),
        ("\ud800", r'"\ud800"'),
        ("\x85\u2028\x7f", r'"\u0085\u2028\u007f"'),
        ([1, "x"], '[1, "x"]'),
        ({"k": [None]}, '{"k": [None]}'),
    ],
)
def test_py_literal(value: Any, expected: str) -> None:
    assert py_literal(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_py_literal_round_trips_and_encodes(value: Any) -> None:
    text = py_literal(value)
    text.encode("utf-8")
    assert len(text.splitlines()) == 1
    assert ast.literal_eval(text) == value


schemas = st.recursive(
    st.sampled_from([{}, True, {"type": "string"}, {"type": "null"}, {"type": ["integer", "null"]}, {"$ref": "#"},
                     {"$ref": "#/$defs/X"}, {"enum": ["a", 'q"', None, 1.5]}, {"const": "\n"}, {"type": 7}]),
    lambda inner: st.one_of(
        st.builds(lambda s: {"type": "array", "items": s}, inner),
        st.builds(lambda s: {"type": "object", "additionalProperties": s}, inner),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(inner, max_size=6)),
        st.builds(lambda xs: {"allOf": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda s: {"$defs": {"X": s}, "oneOf": [s, {"$ref": "#/$defs/X"}]}, inner),
    ),
    max_leaves=10,
)


@settings(max_examples=200)
@given(schemas)
def test_any_schema_gives_a_parseable_expression(schema: Any) -> None:
    root = schema if isinstance(schema, dict) else {}
    ast.parse(type_expr(schema, root), mode="eval")

