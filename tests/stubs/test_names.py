"""Tool and parameter names to identifiers that both Python stubs and Starlark scripts accept."""

from __future__ import annotations

import keyword
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stubs.names import RESERVED, assign_identifiers, is_identifier, to_identifier


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("API-get-user", "API_get_user"),
        ("getUserById", "getUserById"),
        ("list.items", "list_items"),
        ("a b/c", "a_b_c"),
        ("get--client", "get__client"),
        ("2fa", "_2fa"),
        ("", "_"),
        ("-", "_"),
        ("from", "from_"),
        ("class", "class_"),
        ("load", "load_"),
        ("lambda", "lambda_"),
        ("None", "None_"),
        ("True", "True_"),
        ("async", "async_"),
        ("type", "type"),
        ("match", "match"),
        ("café", "caf_"),
        ("日本", "__"),
        ("already_ok", "already_ok"),
    ],
)
def test_to_identifier(name: str, expected: str) -> None:
    assert to_identifier(name) == expected


@pytest.mark.parametrize("name", ["abc", "_x", "camelCase", "type", "match", "x9"])
def test_is_identifier_accepts(name: str) -> None:
    assert is_identifier(name)


@pytest.mark.parametrize("name", ["from", "load", "None", "a-b", "", "1a", "é", "a b", "with"])
def test_is_identifier_rejects(name: str) -> None:
    assert not is_identifier(name)


def test_reserved_covers_python_keywords_and_starlark_words() -> None:
    assert set(keyword.kwlist) <= RESERVED
    assert {"load", "nonlocal", "lambda", "yield"} <= RESERVED


def test_valid_names_keep_themselves_and_the_other_gets_a_suffix() -> None:
    expected = {"get_client": "get_client", "get-client": "get_client_2"}
    assert assign_identifiers(["get-client", "get_client"]) == expected
    assert assign_identifiers(["get_client", "get-client"]) == expected


def test_collisions_are_numbered_in_sorted_order() -> None:
    # sorted: "a b" < "a-b" < "a.b"
    assert assign_identifiers(["a.b", "a-b", "a b"]) == {"a b": "a_b", "a-b": "a_b_2", "a.b": "a_b_3"}


def test_suffix_already_taken_is_skipped() -> None:
    assert assign_identifiers(["a-b", "a.b", "a_b_2"]) == {"a_b_2": "a_b_2", "a-b": "a_b", "a.b": "a_b_3"}


def test_keywords_as_tool_names() -> None:
    assert assign_identifiers(["from", "from_", "import"]) == {"from_": "from_", "from": "from__2", "import": "import_"}


def test_duplicate_input_names_map_once() -> None:
    assert assign_identifiers(["x", "x", "y-z"]) == {"x": "x", "y-z": "y_z"}


def test_empty_input() -> None:
    assert assign_identifiers([]) == {}


names = st.lists(
    st.one_of(
        st.text(max_size=12),
        st.text(alphabet="ab-_.1 ", max_size=5),
        st.sampled_from([*sorted(RESERVED), "a_2", "a-2", "a", "_", "__"]),
    ),
    max_size=30,
)


@given(names, st.randoms(use_true_random=False))
def test_assigned_identifiers_are_unique_valid_and_order_independent(tools: list[str], rnd: random.Random) -> None:
    ids = assign_identifiers(tools)
    assert set(ids) == set(tools)
    assert len(set(ids.values())) == len(ids)
    assert all(is_identifier(i) for i in ids.values())
    assert all(ids[n] == n for n in tools if is_identifier(n))
    shuffled = list(tools)
    rnd.shuffle(shuffled)
    assert assign_identifiers(shuffled) == ids
