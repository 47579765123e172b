"""The source rewrite: only real `server.tool(` calls change, and nothing moves between lines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sandbox import rewrite
from sandbox.rewrite import original_column, rewrite_with_edits

SERVERS = ["gh", "fs"]


def test_call_with_and_without_arguments() -> None:
    assert rewrite("x = gh.search(q=1)\n", SERVERS) == 'x = _sb_call_tool("gh.search", q=1)\n'
    assert rewrite("gh.list()", SERVERS) == '_sb_call_tool("gh.list")'
    assert rewrite("gh.list( )", SERVERS) == '_sb_call_tool("gh.list" )'


def test_strings_comments_and_docstrings_are_untouched() -> None:
    source = (
        'a = "gh.search(q=1)"\n'
        "b = 'fs.read()'\n"
        'c = """\n  gh.search(q=2)\n"""\n'
        'd = r"gh.x()"\n'
        "# gh.search(q=3)\n"
        "def f():\n"
        '    """Calls gh.search(q=4)."""\n'
        "    return 1  # fs.read()\n"
    )
    assert rewrite(source, SERVERS) == source


def test_line_numbers_are_preserved() -> None:
    source = 'x = gh.a(\n    q="gh.b()",\n)\ny = fs.read(path="p")  # fs.read()\nz = 1\n'
    out = rewrite(source, SERVERS)
    assert out.count("\n") == source.count("\n")
    old, new = source.splitlines(), out.splitlines()
    assert new[0] == 'x = _sb_call_tool("gh.a", '
    assert new[1:3] == old[1:3]
    assert new[3] == 'y = _sb_call_tool("fs.read", path="p")  # fs.read()'
    assert new[4] == old[4]


def test_attribute_chains_are_not_calls_to_servers() -> None:
    for source in ["a.b.c(1)", "x.gh.search(q=1)", "x . gh.search()", "other.tool()", "gh.search"]:
        assert rewrite(source, SERVERS) == source


def test_server_split_across_lines_is_left_alone() -> None:
    source = "x = (gh.\n  search(q=1))\n"
    assert rewrite(source, SERVERS) == source


def test_untokenizable_source_is_returned_unchanged() -> None:
    source = 'x = gh.search(q=1)\ny = """never closed\n'
    assert rewrite(source, SERVERS) == source


def test_columns_map_back_to_the_original_line() -> None:
    source = "x = gh.a(q=1) + fs.b() + 2\n"
    out, edits = rewrite_with_edits(source, SERVERS)
    assert out == 'x = _sb_call_tool("gh.a", q=1) + _sb_call_tool("fs.b") + 2\n'
    plus = out.rindex("+") + 1  # 1-based column of the last `+` in the rewritten line
    assert original_column(edits, 1, plus) == source.rindex("+") + 1
    assert original_column(edits, 1, 1) == 1
    inside = out.index("_sb_call_tool") + 3  # within inserted text: points at the call's `(`
    assert original_column(edits, 1, inside) == source.index("(") + 1
    assert original_column(edits, 2, 7) == 7


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters='"\\\n\r')))
def test_string_contents_never_change(text: str) -> None:
    source = f'x = "gh.a() {text}"\ny = gh.b()\n'
    out = rewrite(source, SERVERS)
    assert out.splitlines()[0] == source.splitlines()[0]


def test_a_call_that_is_a_whole_item_of_a_batch_is_routed_to_the_hint() -> None:
    assert rewrite("r = parallel([gh.a(x=1), fs.b()])", SERVERS) == (
        'r = parallel([_sb_not_a_pair("parallel", "gh.a", x=1), _sb_not_a_pair("parallel", "fs.b")])')
    assert rewrite("r = try_parallel(gh.a(id=i) for i in ids)", SERVERS).startswith(
        'r = try_parallel(_sb_not_a_pair("try_parallel", "gh.a", ')
    for kept in ['parallel([("gh.a", {"q": gh.b()})])', "parallel(gh.n() * [p])", 'parallel([gh.a()["k"]])',
                 "x.parallel([gh.a()])", "def parallel(xs):\n    return xs\nparallel([gh.a()])"]:
        assert "_sb_not_a_pair" not in rewrite(kept, SERVERS), kept
