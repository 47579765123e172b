"""getToolDocs text: every parameter with its details, nested fields, return type, an example call."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from stubs import render_docs
from stubs.docs import constraints
from stubs.render import render_signature
from stubs.typed import TypeTable
from tests.stubs.support import data_servers, data_specs, spec
from tests.stubs.test_render import ME, SEARCH


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
        "    children: list[dict] (optional)\n"
        "  people: list[People] (required)\n"
        "    [].email: str (required; format email)\n"
        "    [].address: dict (optional)\n"
        "      city: str (optional)\n"
        "      geo: dict (optional)\n"
        "  target: Target | Target2 | str (required)\n"
        "    option 1:\n"
        "      page_id: str (required)\n"
        "    option 2:\n"
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
    assert '\n    option 2:\n      type: Literal["database_id"] (optional)\n' in page
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
