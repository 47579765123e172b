"""The virtual `servers/` directory: listing, reading with forgiving paths, unknown-file errors."""

from __future__ import annotations

import pytest

from stubs import FileNotFound, ServerEntry, ToolFiles, render_server_stub, render_tool_stub
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
        "servers/clock/now.pyi\n"
        "servers/tracker/  (3 tools)\n"
        "servers/tracker/get_issue.pyi\n"
        "servers/tracker/me.pyi\n"
        "servers/tracker/search_issues.pyi"
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


def test_server_layout_has_no_tool_files_and_vice_versa() -> None:
    with pytest.raises(FileNotFound):
        ToolFiles(SERVERS).read("servers/tracker/me.pyi")
    with pytest.raises(FileNotFound) as caught:
        ToolFiles(SERVERS, layout="tool").read("servers/tracker.pyi")
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
