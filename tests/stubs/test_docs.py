"""getToolDocs text: every parameter with its details, nested fields, return type, an example call."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stubs import ToolSpec, render_docs, render_server_stub, render_tool_stub
from stubs.constraints import constraints
from stubs.fields import MAX_FIELD_CHARS, MAX_FIELD_LINES
from stubs.render import StubTypes, render_signature, stub_order, stub_types
from stubs.typed import TypeTable
from tests.stubs.support import data_servers, data_specs, spec
from tests.stubs.test_render import ME, SEARCH
from tests.stubs.test_typed import KNOWN, body, obj, objects, random_tools


def test_docs_of_a_small_tool() -> None:
    assert render_docs("tracker", SEARCH) == (
        'tracker.search_issues  (upstream name "search-issues")\n'
        "\n"
        "Search issues by text. Supports qualifiers.\n"
        "\n"
        "Parameters:\n"
        "  query: str (required) - Search text\n"
        '  state: Literal["open", "closed"] = "open" (optional)\n'
        "  limit: int = 30 (optional; >= 1, <= 100)\n"
        "  labels: list[str] = None (optional)\n"
        '  from_: str = None (optional; property "from"; format date)\n'
        '  sort_by: str | None = None (optional; property "sort-by")\n'
        "\n"
        "Returns: list[SearchIssuesResult]\n"  # as the stub says
        "  [].id: int (optional)\n"
        "\n"
        "Example:\n"
        '  tracker.search_issues(query="<query>")\n'
    )


def test_docs_of_a_tool_without_parameters() -> None:
    assert render_docs("tracker", ME) == "tracker.me\n\nParameters: none\n\nExample:\n  tracker.me()\n"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"minimum": 1, "maximum": 10}, [">= 1", "<= 10"]),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 1.5}, ["> 0", "< 1.5"]),
        ({"minimum": 0, "exclusiveMinimum": True}, ["> 0"]),
        ({"minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"}, ["minLength 1", "maxLength 5", "pattern `^[a-z]+$`"]),
        ({"minItems": 1, "maxItems": 3, "uniqueItems": True}, ["minItems 1", "maxItems 3", "unique items"]),
        ({"format": "uuid", "multipleOf": 5}, ["multiple of 5", "format uuid"]),
        ({"enum": ["a", "b"]}, []),  # already in the Literal type
        ({"enum": [f"v{i}" for i in range(11)]}, ["values " + ", ".join(f'"v{i}"' for i in range(11))]),
        ({"items": {"enum": [{"x": 1}]}}, ['item values {"x": 1}']),
        ({"examples": ["ab"], "deprecated": True}, ['example "ab"', "deprecated"]),
        ({"minimum": True}, []),
    ],
)
def test_constraints(schema: dict[str, Any], expected: list[str]) -> None:
    assert constraints(schema) == expected


NESTED = spec(
    "create",
    {
        "type": "object",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name"],
            },
        },
        "properties": {
            "root": {"$ref": "#/$defs/Node", "description": "Top node"},
            "people": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "email": {"type": "string", "format": "email"},
                        "address": {"type": "object", "properties": {
                            "city": {"type": "string"},
                            "geo": {"type": "object", "properties": {"lat": {"type": "number"}}},
                        }},
                    },
                    "required": ["email"],
                },
            },
            "target": {
                "oneOf": [
                    {"type": "object", "properties": {"page_id": {"type": "string"}}, "required": ["page_id"]},
                    {"anyOf": [{"type": "object", "properties": {"db": {"type": "integer", "minimum": 0}}}]},
                    {"type": "string"},
                ],
            },
            "mode": {"anyOf": [{"enum": ["a", "b"]}, {"type": "null"}], "default": None, "description": "How"},
        },
        "required": ["root", "people", "target"],
    },
)


def test_nested_fields_arrays_of_objects_options_and_recursion() -> None:
    assert render_docs("s", NESTED) == (
        "s.create\n"
        "\n"
        "Parameters:\n"
        "  root: Node (required) - Top node\n"  # the stub's classes
        "    name: str (required)\n"
        "    children: list[Node] (optional)\n"  # the class above
        "  people: list[People] (required)\n"
        "    [].email: str (required; format email)\n"
        "    [].address: dict (optional)\n"
        "      city: str (optional)\n"
        "      geo: dict (optional)\n"
        "  target: Target | Target2 | str (required)\n"
        "    option 1 (Target):\n"  # each option with its class in the union
        "      page_id: str (required)\n"
        "    option 2 (Target2):\n"
        "      db: int (optional; >= 0)\n"
        '  mode: Literal["a", "b"] | None = None (optional) - How\n'
        "\n"
        "Example:\n"
        '  s.create(root={"name": "<name>"}, people=[{"email": "user@example.com"}], target={"page_id": "<page_id>"})\n'
    )


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, '"<x>"'),
        ({"type": "string", "format": "date-time"}, '"2025-01-31T12:00:00Z"'),
        ({"type": "integer", "minimum": 5}, "5"),
        ({"type": "integer"}, "1"),
        ({"type": "number"}, "1.0"),
        ({"type": "boolean"}, "True"),
        ({"type": "null"}, "None"),
        ({"type": ["null", "integer"]}, "1"),
        ({"enum": [None, "on"]}, '"on"'),
        ({"const": 7}, "7"),
        ({"type": "string", "examples": ["octocat"], "default": "x"}, '"octocat"'),
        ({"type": "string", "example": "ex"}, '"ex"'),
        ({"type": "array", "items": {"type": "integer"}}, "[1]"),
        ({"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {}}}}, "[[[]]]"),
        ({"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}, '{"a": "<a>"}'),
        ({"anyOf": [{"type": "null"}, {"type": "boolean"}]}, "True"),
        ({}, '"<x>"'),
    ],
)
def test_example_placeholders(schema: dict[str, Any], expected: str) -> None:
    tool = spec("t", {"type": "object", "properties": {"x": schema}, "required": ["x"]})
    assert render_docs("s", tool).splitlines()[-1] == f"  s.t(x={expected})"


def test_deeply_nested_unions_and_arrays_stay_bounded() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for i in range(300):
        schema = {"anyOf": [schema, {"type": "null"}]} if i % 2 else {"type": "array", "items": {"oneOf": [schema, {}]}}
    tool = spec("t", {"type": "object", "properties": {"x": schema}, "required": ["x"]})
    assert render_docs("s", tool).startswith("s.t\n")


def test_tricky_docs() -> None:
    event = render_docs("google_docs", data_specs("google_docs")["createEvent"])
    # `end` is a `#/properties/start` pointer with its own description
    assert "  end: Start (required) - Event end. Provide dateTime or date." in event  # one class for both
    assert event.count('    date: str (optional) - ISO date "YYYY-MM-DD" for all-day events.') == 2
    assert event.endswith(
        'google_docs.createEvent(summary="<summary>", start={"dateTime": "<dateTime>"}, '
        'end={"dateTime": "<dateTime>"})\n'
    )
    page = render_docs("notion", data_specs("notion")["API-post-page"])
    assert '\n    option 2 (DataSourceIdParentRequest):\n      type: Literal["database_id"] (optional)\n' in page
    assert page.startswith('notion.API_post_page  (upstream name "API-post-page")\n\nNotion | Create a page\n')
    papers = render_docs("firecrawl", data_specs("firecrawl")["firecrawl_research_search_papers"])
    assert '  from_: str = None (optional; property "from"' in papers


@pytest.mark.parametrize("server", data_servers())
def test_example_calls_of_copied_tools_parse(server: str) -> None:
    for tool in data_specs(server).values():
        example = render_docs(server, tool).splitlines()[-1].strip()
        assert example.startswith(f"{server}.{tool.identifier}(")
        ast.parse(example, mode="eval")


@pytest.mark.parametrize("server", data_servers())
def test_docs_show_each_parameter_as_the_stub_does(server: str) -> None:
    """Same annotation (its class names too) and default (`= None` for "may be left out"); only a cut `...`
    default differs. The return type is the stub's too."""
    for tool in [*data_specs(server).values(), SEARCH, NESTED]:
        line = render_signature(tool, TypeTable([tool.identifier]), server)
        func = ast.parse(line).body[0]
        assert isinstance(func, ast.FunctionDef)
        docs = render_docs(server, tool)
        args, defaults = func.args.args, func.args.defaults
        for i, arg in enumerate(args):
            assert arg.annotation is not None
            head = f"  {arg.arg}: {ast.get_source_segment(line, arg.annotation)}"
            default = defaults[i - len(args) + len(defaults)] if i >= len(args) - len(defaults) else None
            shown = ast.get_source_segment(line, default) if default is not None else None
            if shown == "...":  # the docs give it in full
                assert f"\n{head} = " in docs, (tool.name, head)
                continue
            head += f" = {shown}" if shown is not None else ""
            assert f"\n{head} (" in docs, (tool.name, head)
        if func.returns is not None:
            assert f"\nReturns: {ast.get_source_segment(line, func.returns)}\n" in docs, tool.name


STR, INT = {"type": "string"}, {"type": "integer"}
LINE = {**obj(sku=STR, quantity=INT), "title": "Line"}
ORDER = {**obj(["id", "lines"], id=STR, lines={"type": "array", "items": {"$ref": "#/$defs/Line"}}), "title": "Order"}
ORDERS = spec(
    "list_orders",
    {"type": "object", "$defs": {"Order": ORDER, "Line": LINE},
     "properties": {"order": {"$ref": "#/$defs/Order"}, "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
                    "where": obj(near=obj(x=INT))},
     "required": ["order", "lines", "where"]},
    output_schema={"$defs": {"Order": ORDER, "Line": LINE}, "type": "array", "items": {"$ref": "#/$defs/Order"}},
)  # fmt: skip


def test_fields_inside_parameters_and_results_have_the_stubs_class_names() -> None:
    """Not `dict` / `list[dict]` where the stub says `Line` / `list[Line]`; each class's fields below it."""
    assert body(render_tool_stub("shop", ORDERS)) == [
        "class Line(TypedDict): sku: str; quantity: int",
        "class Order(TypedDict): id: str; lines: list[Line]",
        "class Near(TypedDict): x: int",
        "class Where(TypedDict): near: Near",
        "def list_orders(order: Order, lines: list[Line], where: Where) -> list[Order]: ...",
    ]
    assert render_docs("shop", ORDERS) == (
        "shop.list_orders\n"
        "\n"
        "Parameters:\n"
        "  order: Order (required)\n"
        "    id: str (required)\n"
        "    lines: list[Line] (required)\n"
        "      [].sku: str (required)\n"
        "      [].quantity: int (required)\n"
        "  lines: list[Line] (required)\n"
        "    [].sku: str (required)\n"
        "    [].quantity: int (required)\n"
        "  where: Where (required)\n"
        "    near: Near (required)\n"
        "      x: int (required)\n"
        "\n"
        "Returns: list[Order]\n"
        "  [].id: str (required)\n"
        "  [].lines: list[Line] (required)\n"
        "    [].sku: str (required)\n"
        "    [].quantity: int (required)\n"
        "\n"
        "Example:\n"
        '  shop.list_orders(order={"id": "<id>", "lines": [{}]}, lines=[{"sku": "<sku>", "quantity": 1}], '
        'where={"near": {"x": 1}})\n'
    )


def test_objects_the_stub_leaves_dict_list_their_fields_with_plain_types() -> None:
    """An optional object is `dict` in the stub, and so are the objects inside it: the docs invent no class."""
    tool = spec("f", obj([], opt=obj(inner=obj(x=INT))), output_schema=obj(deep=obj(deeper=obj(deepest=INT))))
    docs = render_docs("s", tool)
    assert "  opt: dict = None (optional)\n    inner: dict (required)\n      x: int (required)\n" in docs
    assert "Returns: FResult\n  deep: Deep (required)\n    deeper: dict (required)\n\n" in docs  # 2 levels


def test_map_values_list_their_fields() -> None:
    labels = {"type": "object", "additionalProperties": obj(name=STR, color=STR)}
    docs = render_docs("s", spec("f", obj(labels=labels)))
    assert "  labels: dict[str, Labels] (required)\n    [key].name: str (required)\n" in docs
    assert "    [key].color: str (required)\n" in docs


def test_given_the_servers_tools_the_docs_name_classes_as_the_server_stub() -> None:
    """In the server's stub tools share classes: `Start2` where another tool took `Start`, a result several tools
    return named for all of them. The tool's own stub, and its docs by default, have `Start` and `GetBResult`."""
    page = obj(["items"], items={"type": "array", "items": STR})
    tools = [spec("get_a", obj(start=obj(line=INT)), output_schema=page),
             spec("get_b", obj(start=obj(x=INT, y=INT)), output_schema=page)]  # fmt: skip
    own = render_docs("s", tools[1])
    assert "  start: Start (required)\n" in own and "Returns: GetBResult\n" in own
    shared = render_docs("s", tools[1], list(reversed(tools)))
    assert "  start: Start2 (required)\n" in shared and "Returns: GetResult\n" in shared
    assert "def get_b(start: Start2) -> GetResult: ..." in render_server_stub("s", tools)
    assert render_docs("s", tools[1], [tools[0]]) == own  # not among them: its own stub's names


def test_the_demos_product_is_named_by_its_title_in_stub_and_docs() -> None:
    product = {**obj(sku=STR, stock=INT), "title": "Product"}
    get = spec("get_product", obj(sku=STR), output_schema=product)
    adjust = spec("adjust_stock", obj(sku=STR, delta=INT), output_schema=product)
    for docs in (render_docs("inventory", get), render_docs("inventory", get, [get, adjust])):
        assert "\nReturns: Product\n  sku: str (required)\n  stock: int (required)\n" in docs


_FIELD = re.compile(r"^\s+(?:\[\]\.|\[key\]\.)*[^:\s]+: (.*?)(?: = .*)? \((?:required|optional)")


def assert_docs_match_stub(server: str, tool: ToolSpec, tools: Sequence[ToolSpec] | None = None) -> None:
    """`tool`'s docs name only classes of its stub (its own, or that of `tools`), with every field of each listed
    with the type the class gives it."""
    types = stub_types(server, stub_order(tools) if tools is not None else [tool])
    assert_docs_name(render_docs(server, tool, tools), types, tool.identifier)


def assert_docs_name(docs: str, types: StubTypes, identifier: str, *, every_field: bool = True) -> None:
    line = types.defs[identifier]
    classes = {re.match(r"(?:class )?(\w+)", c)[1] for c in types.table.lines([line])}  # type: ignore[index]
    for text in docs.splitlines():
        found = _FIELD.match(text) or re.match(r"Returns: (.*)$", text)
        if found is None:
            continue
        try:
            tree = ast.parse(found[1], mode="eval")
        except SyntaxError:  # a field name the pattern cannot split off
            continue
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert names <= KNOWN | {"None"} | classes, (identifier, text)
    for name in classes if every_field else ():
        for key, expr, _ in types.table.fields(name) or ():
            field = re.compile(rf"(?m)^\s+(?:\[\]\.|\[key\]\.)*{re.escape(key)}: {re.escape(expr)}( |$)")
            assert field.search(docs), (identifier, name, key, expr)


@pytest.mark.parametrize("server", data_servers())
def test_docs_name_and_describe_the_classes_of_the_stub(server: str) -> None:
    tools = list(data_specs(server).values())
    for tool in [*tools, NESTED, ORDERS]:
        assert_docs_match_stub(server, tool)
    for tool in tools:
        assert_docs_match_stub(server, tool, tools)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=6), objects, objects), min_size=1, max_size=3))
def test_docs_of_random_nested_schemas_name_only_the_stubs_classes(raw: list[tuple[str, Any, Any]]) -> None:
    """Never a class the stub lacks. (That every field of every class is listed too is checked on real tools:
    random schemas make degenerate unions, such as two identical recursive options, whose classes have the
    same keys and cannot be told apart; the docs then list both options under the first.)"""
    tools = random_tools(raw)
    for t in tools:
        for group in (None, tools):
            types = stub_types("s", stub_order(group) if group else [t])
            assert_docs_name(render_docs("s", t, group), types, t.identifier, every_field=False)


def test_a_definition_used_everywhere_lists_a_bounded_number_of_fields() -> None:
    """Each of 60 parameters has the same 60 fields, each the same 60-field object: 219,600 nested fields, of
    which the docs list `MAX_FIELD_LINES` and say how many more there are at each level they stop at."""
    wide = {f"f{i}": {"$ref": "#/$defs/Leaf"} for i in range(60)}
    schema = {"type": "object", "$defs": {"Wide": {"type": "object", "properties": wide},
                                          "Leaf": {"type": "object", "properties": {f"x{i}": INT for i in range(60)}}},
              "properties": {f"p{i}": {"$ref": "#/$defs/Wide"} for i in range(60)}}  # fmt: skip
    lines = render_docs("s", spec("f", schema)).splitlines()
    assert len([line for line in lines if line.startswith("    ") and "not shown" not in line]) == MAX_FIELD_LINES
    assert lines[3:6] == ["  p0: dict = None (optional)", "    f0: dict (optional)", "      x0: int (optional)"]
    stop = lines.index("      … 5 more fields not shown")  # 4 fields of 61 lines each, then f4 and 55 of its 60
    assert lines[stop - 1 : stop + 4] == [
        "      x54: int (optional)",
        "      … 5 more fields not shown",
        "    … 55 more fields not shown",  # and in the object around it
        "  p1: dict = None (optional)",  # later parameters are still listed, without their fields
        "    … 60 fields not shown",
    ]
    assert sum(line.startswith("  p") for line in lines) == 60 and len(lines) < MAX_FIELD_LINES + 2 * 60 + 10


def test_long_field_names_and_descriptions_are_bounded_too() -> None:
    long = {"type": "string", "description": "word " * 5000}
    item = {"type": "object", "properties": {"x" * 20_000 + str(i): long for i in range(10)}}
    schema = {"type": "object", "$defs": {"Item": item},
              "properties": {f"p{i}": {"$ref": "#/$defs/Item"} for i in range(200)}}  # fmt: skip
    docs = render_docs("s", spec("f", schema))
    assert len(docs) < MAX_FIELD_CHARS + 200 * 2 * 100 + 10_000
    assert "fields not shown" in docs
    assert all(len(line) < 22_000 for line in docs.splitlines())
