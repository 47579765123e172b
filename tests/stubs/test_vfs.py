"""The virtual `servers/` directory: listing (narrowed by server or query), reading with forgiving
paths and line ranges, unknown-file errors."""

from __future__ import annotations

import pytest

from stubs import (
    FileNotFound,
    ServerEntry,
    ToolFiles,
    UnknownServer,
    line_range,
    render_docs,
    render_server_stub,
    render_tool_stub,
)
from stubs.vfs import MAX_MATCHES, MAX_SERVERS_LISTED, MAX_TOOLS_LISTED
from tests.stubs.support import spec
from tests.stubs.test_render import GET, ME, SEARCH

SERVERS = [
    ServerEntry("tracker", (SEARCH, GET, ME)),
    ServerEntry("clock", (spec("now"),)),
    ServerEntry("broken", (), "failed: connection refused"),
]


def test_server_layout_listing_and_paths() -> None:
    files = ToolFiles(SERVERS)
    assert files.listing() == (
        "servers/broken.pyi  (unavailable: failed: connection refused)\n"
        "servers/clock.pyi  (1 tool)\n"
        "servers/tracker.pyi  (3 tools)"
    )
    assert files.paths() == ["servers/clock.pyi", "servers/tracker.pyi"]


def test_tool_layout_listing_and_paths() -> None:
    files = ToolFiles(SERVERS, layout="tool")
    assert files.listing() == (
        "servers/broken/  (unavailable: failed: connection refused)\n"
        "servers/clock/  (1 tool)\n"
        "servers/tracker/  (3 tools)"
    )
    assert files.listing(server="tracker") == (
        "servers/tracker/  (3 tools)\n"
        "  get_issue.pyi  # Get one issue\n"
        "  me.pyi\n"
        "  search_issues.pyi  # Search issues by text"
    )
    assert files.paths() == [
        "servers/clock/now.pyi", "servers/tracker/get_issue.pyi", "servers/tracker/me.pyi",
        "servers/tracker/search_issues.pyi",
    ]  # fmt: skip


def test_status_already_saying_unavailable_is_not_repeated() -> None:
    files = ToolFiles([ServerEntry("x", (), "unavailable: connection refused")])
    assert files.listing() == "servers/x.pyi  (unavailable: connection refused)"
    assert ToolFiles([]).listing() == ""


@pytest.mark.parametrize(
    "path", ["servers/tracker.pyi", "tracker.pyi", "tracker", "servers/tracker", "/servers/tracker.pyi",
             "./servers/tracker.pyi", " servers/tracker.pyi\n", "servers/tracker.py"],
)  # fmt: skip
def test_read_server_file_by_any_reasonable_spelling(path: str) -> None:
    assert ToolFiles(SERVERS).read(path) == render_server_stub("tracker", [SEARCH, GET, ME])


@pytest.mark.parametrize(
    "path", ["servers/tracker/search_issues.pyi", "tracker/search_issues", "tracker.search_issues",
             "servers/tracker/search-issues.pyi", "tracker/search-issues"],
)  # fmt: skip
def test_read_tool_file_by_identifier_or_upstream_name(path: str) -> None:
    assert ToolFiles(SERVERS, layout="tool").read(path) == render_tool_stub("tracker", SEARCH)


def test_unknown_file_error_lists_files_and_count() -> None:
    with pytest.raises(FileNotFound) as caught:
        ToolFiles(SERVERS).read("servers/nope.pyi")
    assert str(caught.value) == (
        'No tool file "servers/nope.pyi". 2 files available: servers/clock.pyi, servers/tracker.pyi'
    )
    assert caught.value.path == "servers/nope.pyi"
    assert set(caught.value.available) == {"servers/clock.pyi", "servers/tracker.pyi"}
    assert isinstance(caught.value, LookupError)


def test_unavailable_server_error_says_why() -> None:
    with pytest.raises(FileNotFound) as caught:
        ToolFiles(SERVERS).read("servers/broken.pyi")
    assert str(caught.value).startswith(
        'No tool file "servers/broken.pyi": server broken is unavailable: failed: connection refused. '
        "2 files available: "
    )


def test_either_layout_reads_both_kinds_of_file_but_lists_one() -> None:
    for layout in ("server", "tool"):
        files = ToolFiles(SERVERS, layout=layout)  # type: ignore[arg-type]
        assert files.read("servers/tracker/me.pyi") == files.read("tracker.me") == render_tool_stub("tracker", ME)
        assert files.read("servers/tracker.pyi") == render_server_stub("tracker", [SEARCH, GET, ME])
    with pytest.raises(FileNotFound) as caught:
        ToolFiles(SERVERS, layout="tool").read("servers/tracker/nope.pyi")
    # the server's own files come first
    assert set(caught.value.available[:3]) == {
        "servers/tracker/me.pyi", "servers/tracker/get_issue.pyi", "servers/tracker/search_issues.pyi",
    }  # fmt: skip
    assert caught.value.available[3:] == ("servers/clock/now.pyi",)


def test_error_lists_at_most_twenty_paths() -> None:
    many = ServerEntry("big", tuple(spec(f"t{i:02}") for i in range(25)))
    with pytest.raises(FileNotFound) as caught:
        ToolFiles([many], layout="tool").read("big/zzz")
    message = str(caught.value)
    assert message.startswith('No tool file "big/zzz". 25 files available: servers/big/')
    assert message.endswith(", … (5 more; listToolFiles lists all)")
    assert message.count("servers/big/t") == 20
    assert len(caught.value.available) == 25


def test_no_files_at_all() -> None:
    with pytest.raises(FileNotFound, match=r'^No tool file "x"\. No tool files are available\.$'):
        ToolFiles([]).read("x")


def test_reads_are_rendered_once() -> None:
    files = ToolFiles(SERVERS)
    assert files.read("tracker") is files.read("servers/tracker.pyi")


def test_duplicate_identifiers_keep_one_tool_file() -> None:
    a, b = spec("x-y", identifier="x_y"), spec("x.y", identifier="x_y")
    files = ToolFiles([ServerEntry("s", (b, a))], layout="tool")
    assert files.paths() == ["servers/s/x_y.pyi"]
    assert files.read("s/x.y") == files.read("s/x-y") == render_tool_stub("s", a)


def test_one_servers_tools_with_the_stub_line_of_each() -> None:
    files = ToolFiles(SERVERS)
    listing = files.listing(server="tracker")
    assert listing == (
        "servers/tracker.pyi  (3 tools)\n"
        "  L7 get_issue  # Get one issue\n"
        "  L8 me\n"
        "  L9 search_issues  # Search issues by text"
    )
    stub = files.read("tracker").splitlines()
    for line in listing.splitlines()[1:]:
        number, name = line.split()[:2]
        assert stub[int(number[1:]) - 1].startswith(f"def {name}(")
    assert files.listing(server="broken") == "servers/broken.pyi  (unavailable: failed: connection refused)"
    assert files.listing(server="  ", query="") == files.listing()


def test_unknown_server_names_the_servers() -> None:
    with pytest.raises(UnknownServer) as caught:
        ToolFiles(SERVERS).listing(server="nope")
    assert str(caught.value) == 'No server "nope". Servers: broken, clock, tracker'
    assert isinstance(caught.value, LookupError)


def test_query_ranks_tools_on_all_servers() -> None:
    files = ToolFiles(SERVERS)
    assert files.listing(query="issue") == (
        '2 tools match "issue", best first:\n'
        "servers/tracker.pyi  (3 tools)\n"
        "  L7 get_issue  # Get one issue\n"
        "  L9 search_issues  # Search issues by text"
    )
    assert files.listing(query="search issues").splitlines()[2] == "  L9 search_issues  # Search issues by text"
    assert files.listing(query="now clock").splitlines()[1:] == ["servers/clock.pyi  (1 tool)", "  L3 now"]
    assert files.listing(server="clock", query="issue") == (
        'No tool on clock matches "issue". Listing instead:\nservers/clock.pyi  (1 tool)\n  L3 now'
    )
    nothing = files.listing(query="zebra")
    assert nothing.startswith('No tool matches "zebra". Listing instead:\n') and nothing.endswith(files.listing())


def test_long_listings_say_how_much_is_not_shown() -> None:
    many = [spec(f"tool{i:03}", description=f"Handles record kind {i}") for i in range(120)]
    files = ToolFiles([ServerEntry("big", tuple(many))])
    one = files.listing(server="big").splitlines()
    assert len(one) == 1 + MAX_TOOLS_LISTED + 1
    assert one[-1] == f"… {120 - MAX_TOOLS_LISTED} more tools not shown; add query=... to find one"
    found = files.listing(query="record").splitlines()
    assert found[0] == '120 tools match "record", best first:'
    assert len(found) == 2 + MAX_MATCHES + 1
    assert found[-1] == f"… {120 - MAX_MATCHES} more matches not shown; use more specific words"
    servers = [ServerEntry(f"s{i:03}", (spec("t"),)) for i in range(MAX_SERVERS_LISTED + 5)]
    listing = ToolFiles(servers).listing().splitlines()
    assert len(listing) == MAX_SERVERS_LISTED + 1
    assert listing[-1] == "… 5 more servers not shown; query=... finds tools on all of them"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, "a\nb\nc\nd\n"),
        (1, 4, "a\nb\nc\nd\n"),
        (2, 3, "# f.pyi, lines 2-3 of 4\nb\nc\n"),
        (3, None, "# f.pyi, lines 3-4 of 4\nc\nd\n"),
        (None, 1, "# f.pyi, lines 1-1 of 4\na\n"),
        (0, 99, "a\nb\nc\nd\n"),
        (9, None, "# f.pyi: no lines 9-9; it has 4 lines\n"),
        (3, 2, "# f.pyi: no lines 3-2; it has 4 lines\n"),
    ],
)
def test_line_range_keeps_lines_as_they_are(start: int | None, end: int | None, expected: str) -> None:
    assert line_range("a\nb\nc\nd\n", start, end, "f.pyi") == expected


def test_docs_name_classes_as_the_file_the_listing_names() -> None:
    """Server layout: the server's stub, where another tool took `Start` first; tool layout: the tool's own."""
    first = spec("a", {"type": "object", "properties": {"start": {"type": "object", "properties": {"n": {}}}},
                       "required": ["start"]})  # fmt: skip
    second = spec("b", {"type": "object", "properties": {"start": {"type": "object", "properties": {"m": {}}}},
                        "required": ["start"]})  # fmt: skip
    servers = [ServerEntry("s", (second, first))]
    by_server, by_tool = ToolFiles(servers), ToolFiles(servers, layout="tool")
    assert "def b(start: Start2): ..." in by_server.read("servers/s.pyi")
    assert "\n  start: Start2 (required)\n    m: Any (optional)\n" in by_server.docs("s", second)
    assert by_server.docs("s", second) == render_docs("s", second, [first, second])
    assert "def b(start: Start): ..." in by_tool.read("servers/s/b.pyi")
    assert by_tool.docs("s", second) == render_docs("s", second)
    assert "\n  start: Start (required)\n" in by_tool.docs("s", second)
    stranger = spec("b", {"type": "object", "properties": {}})  # not the server's tool of that name: its own docs
    assert by_server.docs("s", stranger) == render_docs("s", stranger)
    assert by_server.docs("x", first) == render_docs("x", first)  # no such server
