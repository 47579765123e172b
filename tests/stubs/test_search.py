"""Ranking tools for a query: words, weights, ties; real catalogs answer plain requests sensibly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stubs import ServerEntry, ToolFiles
from stubs.search import Document, rank, words
from tests.stubs.support import CATALOG_DIR, load_tools, specs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listPullRequests", ["list", "pull", "request"]),
        ("API-get-user", ["api", "get", "user"]),
        ("search_issues by query", ["search", "issue", "query"]),
        ("the entries of a class", ["entry", "class"]),
        ("HTMLParser v2", ["html", "parser", "v", "2"]),
        ("", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def doc(server: str, name: str, description: str = "") -> Document:
    return Document((server, name), server, (name,), description)


DOCS = [
    doc("github", "list_issues", "List issues in a repository"),
    doc("github", "search_code", "Search code across repositories"),
    doc("linear", "search_issues", "Search issues"),
    doc("notes", "create_note", "Write a note; mentions issues in passing, and issues again"),
]


def test_name_words_outweigh_description_words() -> None:
    assert rank("issues", DOCS) == [("linear", "search_issues"), ("github", "list_issues"), ("notes", "create_note")]


def test_a_query_naming_a_server_prefers_its_tools() -> None:
    assert rank("search issues", DOCS)[0] == ("linear", "search_issues")
    assert rank("github search issues", DOCS)[:2] == [("github", "search_code"), ("github", "list_issues")]


def test_no_shared_word_no_result_and_ties_by_key() -> None:
    assert rank("zebra", DOCS) == [] and rank("", DOCS) == [] and rank("the of", DOCS) == []
    twins = [doc("b", "get_x"), doc("a", "get_x"), doc("a", "get_w")]
    assert rank("get", twins) == [("a", "get_w"), ("a", "get_x"), ("b", "get_x")]


@given(st.text(max_size=40), st.lists(st.tuples(st.text(max_size=8), st.text(max_size=30)), max_size=8))
def test_rank_returns_each_matching_key_once(query: str, raw: list[tuple[str, str]]) -> None:
    docs = [doc("s", f"t{i}_{name}", text) for i, (name, text) in enumerate(raw)]
    ranked = rank(query, docs)
    assert len(ranked) == len(set(ranked)) and set(ranked) <= {d.key for d in docs}
    assert rank(query, list(reversed(docs))) == ranked


MANIFEST = CATALOG_DIR / "catalog-large.json"
PLAIN_REQUESTS = [
    ("take a screenshot of the page", ("playwright", "browser_take_screenshot")),
    ("github list pull requests", ("github", "list_pull_requests")),
    ("query sqlite database", ("sqlite", "read_query")),
    ("linear create issue", ("linear", "linear_create_issue")),
    ("append rows to a google sheet", ("google_sheets", "sheets_append_values")),
    ("scrape a web page to markdown", ("firecrawl", "firecrawl_scrape")),
]


@pytest.mark.parametrize(("query", "best"), PLAIN_REQUESTS)
def test_real_catalog_finds_the_obvious_tool_first(query: str, best: tuple[str, str]) -> None:
    servers = json.loads(MANIFEST.read_text(encoding="utf-8"))["servers"]
    files = ToolFiles([ServerEntry(s["server"], specs(load_tools(CATALOG_DIR / s["file"]))) for s in servers])
    assert rank(query, files.documents())[0] == best
