"""The names clients see: the `mcp__<gw>__` prefix, its 64-character limit, direct-mode and prompt names."""

from __future__ import annotations

import hashlib

from mcp_gateway.naming import CLIENT_NAME_LIMIT, DirectNames, clean_name, client_prefix, prompt_name


def digest(server: str, tool: str) -> str:
    return hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:6]


def test_client_prefix() -> None:
    assert client_prefix("gw") == "mcp__gw__"
    assert client_prefix("my-gateway") == "mcp__my-gateway__"


def test_clean_name_keeps_letters_digits_underscore_and_dash() -> None:
    assert clean_name("get_issue-2") == "get_issue-2"
    assert clean_name("a.b c/d:e") == "a_b_c_d_e"
    assert clean_name("café") == "caf_"
    assert clean_name("") == ""


def test_prompt_name() -> None:
    assert prompt_name("github", "review pr", pass_through=False) == "github_review_pr"
    assert prompt_name("github", "review pr", pass_through=True) == "review pr"


def test_direct_names_are_prefixed_with_the_server() -> None:
    names = DirectNames("gw", prefix=True)
    assert names.name_for("math", "add") == "math_add"
    assert names.name_for("math", "get.client") == "math_get_client"
    assert names.taken == {"math_add", "math_get_client"}


def test_pass_through_keeps_the_tool_name() -> None:
    names = DirectNames("gw", prefix=False)
    assert names.name_for("math", "get.client") == "get.client"
    assert names.name_for("math", "x" * 200) == "x" * 200  # not cut either


def test_a_collision_gets_a_digest_of_server_and_tool() -> None:
    names = DirectNames("gw", prefix=True)
    assert names.name_for("a_b", "c") == "a_b_c"
    assert names.name_for("a", "b_c") == f"a_b_c_{digest('a', 'b_c')}"
    # names that only collide after cleaning
    assert names.name_for("math", "get-client") == "math_get-client"
    assert names.name_for("math", "get_client") == "math_get_client"
    assert names.name_for("math", "get.client") == f"math_get_client_{digest('math', 'get.client')}"


def test_long_names_are_cut_to_fit_the_client_limit() -> None:
    names = DirectNames("gw", prefix=True)
    long_a = names.name_for("server", "x" * 80 + "a")
    long_b = names.name_for("server", "x" * 80 + "b")
    assert long_a != long_b
    assert len("mcp__gw__" + long_a) <= CLIENT_NAME_LIMIT
    assert names.name_for("a_b", "c") != names.name_for("a", "b_c")


def test_the_limit_is_what_the_prefix_leaves_of_64() -> None:
    room = CLIENT_NAME_LIMIT - len(client_prefix("gw"))
    assert room == 55
    names = DirectNames("gw", prefix=True)
    fits = "t" * (room - len("s_"))
    assert names.name_for("s", fits) == "s_" + fits  # exactly the limit: kept whole
    too_long = fits + "u"
    cut = names.name_for("s", too_long)
    assert cut == ("s_" + too_long)[: room - 7] + "_" + digest("s", too_long)
    assert len(cut) == room


def test_a_longer_gateway_name_leaves_less_room() -> None:
    names = DirectNames("a_rather_long_gateway", prefix=True)
    name = names.name_for("server", "tool_" * 10)
    assert len(client_prefix("a_rather_long_gateway") + name) == CLIENT_NAME_LIMIT
    assert name.endswith("_" + digest("server", "tool_" * 10))


def test_a_digested_name_never_repeats_one_already_given() -> None:
    names = DirectNames("gw", prefix=True)
    given = [names.name_for("a_b", "c"), names.name_for("a_b", f"c_{digest('a', 'b_c')}"), names.name_for("a", "b_c")]
    assert len(set(given)) == 3, given
