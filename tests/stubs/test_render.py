"""Stub files: signatures, summaries, headers, imports; exact text for small cases."""

from __future__ import annotations

import ast
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stubs import ToolSpec, assign_identifiers, render_docs, render_server_stub, render_tool_stub
from stubs.render import first_sentence, render_signature
from stubs.tool import param_map
from tests.stubs.support import data_servers, data_specs, spec
from tests.stubs.test_schema import json_values, schemas

SEARCH = spec(
    "search-issues",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Search text"},
            "state": {"type": "string", "enum": ["open", "closed"], "default": "open"},
            "limit": {"type": "integer", "default": 30, "minimum": 1, "maximum": 100},
            "labels": {"type": "array", "items": {"type": "string"}},
            "from": {"type": "string", "format": "date"},
            "sort-by": {"type": ["string", "null"]},
        },
        "required": ["query"],
    },
    "Search issues by text. Supports qualifiers.",
    identifier="search_issues",
    output_schema={"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
)
GET = spec(
    "get_issue",
    {"type": "object", "properties": {"owner": {"type": "string"}, "number": {"type": "integer"}},
     "required": ["number", "owner"]},
    "Get one issue.\nMore text.",
    output_schema={"type": "object", "properties": {"title": {"type": "string"}}},
)
ME = spec("me")

SEARCH_DEF = (
    'def search_issues(query: str, state: Literal["open", "closed"] = "open", limit: int = 30, '
    "labels: list[str] = None, from_: str = None, sort_by: str | None = None) -> list[SearchIssuesResult]: ..."
    "  # Search issues by text [limit: 1..100; from_: date]"
)
HINT = "in executeToolCode. Full docs: getToolDocs(server, tool)."


def test_three_tool_server_stub() -> None:
    assert render_server_stub("tracker", [SEARCH, GET, ME]) == (
        f"# servers/tracker.pyi — 3 tools; call as tracker.<tool>(arg=value) {HINT}\n"
        "from typing import Literal, TypedDict\n"
        "\n"
        "class GetIssueResult(TypedDict, total=False): title: str\n"
        "class SearchIssuesResult(TypedDict, total=False): id: int\n"
        "\n"
        "def get_issue(owner: str, number: int) -> GetIssueResult: ...  # Get one issue\n"
        "def me(): ...\n"
        f"{SEARCH_DEF}\n"
    )


def test_server_stub_is_byte_identical_for_any_tool_order() -> None:
    tools = [SEARCH, GET, ME]
    expected = render_server_stub("tracker", tools)
    for seed in range(5):
        shuffled = list(tools)
        random.Random(seed).shuffle(shuffled)
        assert render_server_stub("tracker", shuffled) == expected


def test_tool_stub() -> None:
    assert render_tool_stub("tracker", SEARCH) == (
        f"# servers/tracker/search_issues.pyi — call as tracker.search_issues(arg=value) {HINT}\n"
        "from typing import Literal, TypedDict\n"
        "\n"
        "class SearchIssuesResult(TypedDict, total=False): id: int\n"
        "\n"
        f"{SEARCH_DEF}\n"
    )


def test_param_map_maps_identifiers_back_to_property_names() -> None:
    assert param_map(SEARCH) == {
        "query": "query", "state": "state", "limit": "limit", "labels": "labels", "from_": "from", "sort_by": "sort-by",
    }  # fmt: skip


def test_imports_only_what_is_used() -> None:
    schema = {"properties": {"a": {"type": "integer"}}, "required": ["a"]}
    typed = spec("add", schema, output_schema={"type": "integer"})
    assert render_server_stub("m", [typed]).splitlines()[1:] == ["", "def add(a: int) -> int: ..."]
    quoted = spec("f", {"properties": {"a": {"const": "Any"}}, "required": ["a"]}, output_schema={"type": "string"})
    assert render_server_stub("m", [quoted]).splitlines()[1] == "from typing import Literal"


def test_singular_count_custom_header_and_empty_server() -> None:
    assert render_server_stub("m", [ME]).startswith("# servers/m.pyi — 1 tool; ")
    custom = render_server_stub("m", [ME], header="first\n# second")
    assert custom == "# first\n# second\n\ndef me(): ...\n"
    assert render_server_stub("m", [], header="") == ""
    assert render_server_stub("m", []) == f"# servers/m.pyi — 0 tools; call as m.<tool>(arg=value) {HINT}\n"


@pytest.mark.parametrize(
    ("props", "required", "expected"),
    [
        ({"a": {"type": "integer"}}, ["a"], "a: int"),
        ({"a": {"type": "integer"}}, [], "a: int = None"),
        ({"a": {"type": "integer", "default": 3}}, [], "a: int = 3"),
        ({"a": {"type": "integer", "default": 3}}, ["a"], "a: int"),
        ({"a": {"type": ["string", "null"], "default": None}}, [], "a: str | None = None"),
        ({"a": {}}, [], "a: Any = None"),
        ({"a": {"type": "string", "default": 'say "hi"'}}, [], r'a: str = "say \"hi\""'),
        ({"a": {"type": "array", "default": []}}, [], "a: list = []"),
        ({"a": {"type": "object", "default": {"k": "v" * 50}}}, [], "a: dict = ..."),
        ({"a": {"type": "boolean", "default": False}}, [], "a: bool = False"),
        ({"b": {}, "a": {"type": "string"}}, ["a"], "a: str, b: Any = None"),
        ({"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, [], "a: str | None = None"),
        ({}, ["x-y"], "x_y: Any"),
        ({"class": {"type": "string"}, "in": {"type": "integer"}}, ["in"], "in_: int, class_: str = None"),
        ({"a-b": {"type": "string"}, "a_b": {"type": "integer"}}, ["a-b", "a_b"], "a_b_2: str, a_b: int"),
        ({"type": {"type": "string"}}, ["type"], "type: str"),
    ],
)
def test_parameters(props: dict[str, Any], required: list[str], expected: str) -> None:
    tool = spec("f", {"type": "object", "properties": props, "required": required})
    assert render_signature(tool) == f"def f({expected}): ..."
    ast.parse(render_signature(tool))


def test_parameters_from_ref_and_all_of_input_schema() -> None:
    schema = {"$ref": "#/$defs/In", "$defs": {"In": {"allOf": [
        {"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "integer"}}}]}}}
    assert render_signature(spec("f", schema)) == "def f(a: str, b: int = None): ..."


def test_notes_see_through_refs_and_null_unions_as_the_docs_do() -> None:
    schema = {"$defs": {"N": {"type": "integer", "minimum": 1, "maximum": 5}}, "properties": {
        "a": {"anyOf": [{"$ref": "#/$defs/N"}, {"enum": [None]}]},
        "b": {"oneOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
    }}  # fmt: skip
    assert render_signature(spec("f", schema)).endswith("  # [a: 1..5; b: date]")
    docs = render_docs("s", spec("f", schema))
    assert "(optional; >= 1, <= 5)" in docs and "(optional; format date)" in docs


def test_malformed_schemas_do_not_break_rendering() -> None:
    schema: dict[str, Any] = {"properties": {"a": "not a schema", "b": {"type": 7, "enum": "x"}}, "required": "a"}
    assert render_signature(spec("f", schema)) == "def f(b: Any = None): ..."
    assert render_signature(ToolSpec("g", "g", "", {"properties": None})) == "def g(): ..."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Get a file. Then more.", "Get a file"),
        ("Get a file.", "Get a file"),
        ("Wait...", "Wait..."),
        ("Notion | Retrieve a user\nError Responses:\n400: 400", "Notion | Retrieve a user"),
        ("\n  Scrape one URL and return it.\n", "Scrape one URL and return it"),
        ("Use a path, e.g. src/main.py. Done.", "Use a path, e.g. src/main.py"),
        ("Version 1.2 is here. Yes.", "Version 1.2 is here"),
        ("tabs\tand   spaces.", "tabs and spaces"),
        ("nul\x00byte and\rreturn", "nul byte and"),
        ("line\u2028separator", "line"),
        ("", ""),
    ],
)
def test_first_sentence(text: str, expected: str) -> None:
    assert first_sentence(text) == expected


def test_first_sentence_cuts_at_a_word_with_an_ellipsis() -> None:
    text = "alpha beta gamma delta epsilon"
    assert first_sentence(text, limit=20) == "alpha beta gamma…"
    assert first_sentence("x" * 30, limit=10) == "x" * 9 + "…"
    assert len(first_sentence("word " * 100)) <= 120


@pytest.mark.parametrize(
    ("unit", "whole"),
    [
        ("é", "é"),
        ("e\u0301", "e\u0301"),  # combining accent stays with its letter
        ("👩\u200d💻", "👩\u200d💻"),  # zero-width-joiner emoji
        ("👍🏽", "👍🏽"),  # skin-tone modifier
        ("🇫🇷", "🇫🇷"),  # flag = two regional indicators
        ("日", "日"),
    ],
)
def test_first_sentence_never_splits_a_character(unit: str, whole: str) -> None:
    for limit in range(5, 30):
        cut = first_sentence(unit * 40, limit=limit)
        assert cut.endswith("…") and len(cut) <= limit
        body = cut[:-1]
        assert body == whole * (len(body) // len(whole))
        body.encode("utf-8")


def test_summary_comment_cannot_break_the_stub() -> None:
    tool = spec("f", description="Evil\x00 \x0c comment ''' \"\"\" \\")
    line = render_signature(tool)
    assert line == "def f(): ...  # Evil comment ''' \"\"\" \\"
    ast.parse(line)


@pytest.mark.parametrize("server", data_servers())
def test_copied_tricky_tools_render_parseable_stubs(server: str) -> None:
    tools = list(data_specs(server).values())
    ast.parse(render_server_stub(server, tools))
    for tool in tools:
        ast.parse(render_tool_stub(server, tool))


def test_tricky_signatures() -> None:
    notion = data_specs("notion")
    assert render_signature(notion["API-patch-block-children"]) == (
        "def API_patch_block_children(block_id: str, children: list[dict | str], after: str = None): ..."
        "  # Notion | Append block children"
    )
    papers = data_specs("firecrawl")["firecrawl_research_search_papers"]
    assert "from_: str = None" in render_signature(papers)
    assert param_map(papers)["from_"] == "from"
    issue = data_specs("github")["issue_write"]
    assert "type: str | None = None" in render_signature(issue)  # nullable in the schema
    shot = render_signature(data_specs("playwright")["browser_take_screenshot"])
    assert shot.startswith('def browser_take_screenshot(scale: Literal["css", "device"], element: str = None')
    assert 'type: Literal["png", "jpeg", "webp"] = None' in shot
    event = render_signature(data_specs("google_docs")["createEvent"])
    assert "start: dict, end: dict" in event and 'calendarId: str = "primary"' in event


def test_tools_normalising_to_one_identifier_are_both_kept() -> None:
    names = ["get-client", "get_client", "Get.Client"]
    ids = assign_identifiers(names)
    tools = [spec(n, description=f"Tool {n}", identifier=ids[n]) for n in names]
    assert render_server_stub("m", tools).splitlines()[2:] == [
        "def Get_Client(): ...  # Tool Get.Client",
        "def get_client(): ...  # Tool get_client",
        "def get_client_2(): ...  # Tool get-client",
    ]


def test_enum_values_with_quotes_and_backslashes() -> None:
    values = ['a "b"', "it's", "c\\d", "x\ny", "\u2028"]
    tool = spec("f", {"properties": {"q": {"enum": values}}, "required": ["q"]})
    line = render_signature(tool)
    assert line == 'def f(q: Literal["a \\"b\\"", "it\'s", "c\\\\d", "x\\ny", "\\u2028"]): ...'
    func = ast.parse(line).body[0]
    assert isinstance(func, ast.FunctionDef)
    annotation = func.args.args[0].annotation
    assert isinstance(annotation, ast.Subscript) and isinstance(annotation.slice, ast.Tuple)
    assert [ast.literal_eval(e) for e in annotation.slice.elts] == values


properties = st.dictionaries(
    st.text(max_size=6),
    st.one_of(schemas, st.builds(lambda s, d: {**s, "default": d} if isinstance(s, dict) else s, schemas, json_values)),
    max_size=4,
)
random_tools = st.lists(st.tuples(st.text(max_size=8), properties, st.text(max_size=60)), max_size=5)


@settings(max_examples=150, deadline=None)
@given(random_tools)
def test_random_tools_always_render_parseable_stubs_and_examples(raw: list[tuple[str, dict[str, Any], str]]) -> None:
    ids = assign_identifiers([name for name, _, _ in raw])
    tools = [
        ToolSpec(name, ids[name], text, {"type": "object", "properties": props, "required": list(props)[:2]}, props)
        for name, props, text in raw
    ]
    ast.parse(render_server_stub("s", tools))
    for tool in tools:
        ast.parse(render_tool_stub("s", tool))
        ast.parse(render_docs("s", tool).splitlines()[-1].strip(), mode="eval")
