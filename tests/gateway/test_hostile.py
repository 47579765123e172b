"""Hostile scripts through the real gateway: each ends with a clear error, and the next call still works.

One gateway (in this process, over real HTTP on 127.0.0.1) serves the whole module; its
upstreams are copies of `tests/fixtures/hostile_server.py`:

- `hostile` (stdio): the well-behaved tools every case ends with (`ping`), and the slow ones;
- `doomed` (stdio, 1 s call timeout): its `lone_surrogate` tool kills the server process;
- `clog` (stdio): a 50 MB result, refused as it is read (over `max_message_bytes`);
- `wide` (streamable HTTP): the same 50 MB result over HTTP.

After every case `result = hostile.ping()` must answer within 1 s, and the peak memory of
this process (gateway included; workers and upstreams are other processes) must stay
within MEMORY_BOUND_MB of what it was once the gateway was up.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.helpers import gateway_client, http_fixture, make_config, stdio, text_of

pytestmark = pytest.mark.anyio

TIMEOUT_S = 3
MEMORY_MB = 256
MEMORY_BOUND_MB = 400
PING_WITHIN_S = 2.5  # generous for a loaded 2-core CI machine; a blocked gateway takes the full time limit


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    """Start VmHWM afresh (Linux `clear_refs`), so earlier tests in the session do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class Gw:
    client: Client
    baseline_mb: float
    peak_tracked: bool
    peak_mb: float = 0.0

    def sample(self) -> float:
        """The memory growth so far (peak if the kernel tracks it for us, else the current RSS)."""
        now = _status_mb("VmHWM" if self.peak_tracked else "VmRSS")
        self.peak_mb = max(self.peak_mb, now)
        return self.peak_mb - self.baseline_mb


@pytest.fixture(scope="module")
async def gw() -> AsyncIterator[Gw]:
    async with http_fixture("hostile_server") as wide_url:
        servers = {
            "hostile": stdio("hostile_server", timeout_s=60),
            "doomed": stdio("hostile_server", timeout_s=1),
            "clog": stdio("hostile_server", timeout_s=60, max_message_bytes=16 * 1024 * 1024),
            "wide": {"url": wide_url, "timeout_s": 60, "max_message_bytes": 16 * 1024 * 1024},
        }
        config = make_config(servers, limits={"timeout_s": TIMEOUT_S, "memory_mb": MEMORY_MB,
                                              "max_tool_result_bytes": 16 * 1024 * 1024})
        async with gateway_client(config) as client:
            await _execute(client, "result = hostile.ping()")  # warm: every upstream and worker is up
            tracked = _reset_peak()
            yield Gw(client, _status_mb("VmRSS"), tracked)


async def _execute(client: Client, code: str) -> Any:
    return await client.call_tool("executeToolCode", {"code": code})


@dataclass
class Case:
    """A hostile script and what its reply must contain."""

    code: str | Callable[[], str]
    expect: list[str]
    error: bool = True
    within_s: float = 10.0
    check: Callable[[Any, str], None] | None = None


def _exponential(levels: int) -> str:
    return f"l = [1]\nfor i in range({levels}):\n    l = [l, l]\n"


TIME_LIMIT = [f"script exceeded the time limit of {TIMEOUT_S} s (limits.timeout_s)"]

MEMORY = [f"exceeded the memory limit of {MEMORY_MB} MiB (limits.memory_mb)"]


def _has_image(out: Any, text: str) -> None:
    assert [block.type for block in out.content] == ["text", "image"], out.content


def _output_cut(out: Any, text: str) -> None:
    assert len(text.encode()) < 64 * 1024 + 200, len(text)


CASES: dict[str, Case] = {
    # the script itself runs away
    "infinite-loop": Case("while True:\n    pass\n", TIME_LIMIT, within_s=TIMEOUT_S + 2),
    "deep-recursion": Case("def f(n):\n    return f(n + 1)\nf(0)\n", MEMORY),
    "huge-repeat": Case('x = "x" * (1 << 33)\n', ["repeat count 8589934592 too large"]),
    "doubling-string": Case('s = "x"\nfor i in range(40):\n    s = s + s\n', MEMORY),
    "growing-list": Case('l = []\nfor i in range(100000000):\n    l.append("x" * 1000)\n', MEMORY),
    "exponential-result": Case(
        _exponential(40) + "result = l\n",
        ["result: value is larger than 1048576 bytes as JSON (limits.max_result_bytes)"],
    ),
    "exponential-arguments": Case(
        _exponential(40) + 'call_tool("hostile.ping", x=l)\n',
        ["arguments of hostile.ping: value is larger than 1048576 bytes as JSON (limits.max_result_bytes)"],
    ),
    "exponential-to-string": Case(_exponential(40) + "s = str(l)\n", MEMORY),
    "self-reference": Case(
        "l = []\nl.append(l)\nresult = l\n", ["result: value nested deeper than 64 levels (limits.max_depth)"]
    ),
    "json-decode-bomb": Case(
        'x = json_decode("[" * 100000 + "]" * 100000)\n', ["json_decode: input is nested deeper than 64 levels"]
    ),
    "output-flood": Case(
        'for i in range(100000):\n    print("x" * 1000)\nresult = "done"\n',
        ["[output cut: ", "more bytes not shown]", 'result = "done"'],
        error=False,
        check=_output_cut,
    ),
    "huge-result": Case(
        'result = "x" * (2 << 20)\n', ["over the limit of 1048576 bytes (limits.max_result_bytes)"]
    ),
    "huge-fail-message": Case('fail("x" * 10000000)\n', ["more characters)"]),
    "huge-arguments": Case(
        'hostile.ping(x="y" * (2 << 20))\n', ["over the limit of 1048576 bytes (limits.max_result_bytes)"]
    ),
    "source-over-max-source-bytes": Case(
        lambda: "# padding\n" * 30000 + "result = 1\n",
        ["script is 300011 bytes, over the limit of 262144 bytes (limits.max_source_bytes)"],
    ),
    # too many calls
    "thousands-of-calls": Case(
        "for i in range(5000):\n    hostile.ping()\n",
        ["script exceeded the limit of 200 tool calls (limits.max_tool_calls)"],
    ),
    "parallel-over-max-tool-calls": Case(
        'parallel([("hostile.ping", {})] * 5000)\n',
        ["parallel of 5000 calls is over the limit of 200 tool calls (limits.max_tool_calls)"],
    ),
    "parallel-after-calls": Case(
        'x = parallel([("hostile.ping", {})] * 150)\ny = parallel([("hostile.ping", {})] * 51)\n',
        ["parallel of 51 calls would exceed the limit of 200 tool calls (limits.max_tool_calls); 150 made before it"],
    ),
    # upstreams that misbehave
    "tool-never-answers": Case("hostile.never()\n", TIME_LIMIT, within_s=TIMEOUT_S + 2),
    "tool-returns-50MB-over-http": Case(
        "x = wide.flood(mb=50)\n",
        ["wide.flood failed: its answer is 50.0 MiB, more than the server's max_message_bytes (16 MiB)"],
    ),
    "try-call-on-20MB": Case(
        'r = try_call("wide.flood", mb=20)\nresult = [r["ok"], "max_message_bytes" in r["error"]]\n',
        ["result = [false, true]"],
        error=False,
    ),
    "tool-result-too-deep": Case(
        "x = hostile.deep(levels=200)\n",
        ["the result of hostile.deep: value nested deeper than 64 levels (limits.max_depth)"],
    ),
    "tool-returns-escaped-lone-surrogates": Case(
        "result = hostile.escaped_surrogates()\n",
        ['result = {"lone": "a\ufffdb", "low": "\ufffd", "pair": "\U0001f600"}'],
        error=False,
    ),
    "tool-returns-invalid-escape": Case(
        "result = hostile.bad_escape()\n", ['result = "{\\"s\\": \\"\\\\uZZZZ\\"}"'], error=False
    ),
    "tool-returns-huge-int-text": Case(
        "x = hostile.huge_int(digits=5000)\nresult = [type(x), len(x)]\n", ['result = ["string", 5000]'], error=False
    ),
    "tool-kills-its-server": Case(
        "doomed.lone_surrogate()\n", ["doomed.lone_surrogate failed: no answer within 1 s (timeout_s)"]
    ),
    "tool-returns-image": Case(
        "result = hostile.image()\n",
        ['"type": "image"', '"mimeType": "image/png"', '"bytes": 67'],
        error=False,
        check=_has_image,
    ),
    # reaching outside the bindings
    "server-not-configured": Case(
        "result = secret.read(path='/etc/passwd')\n", ["undefined: secret (not a server; servers: clog, doomed"]
    ),
    "server-not-configured-by-name": Case('call_tool("secret.read")\n', ["unknown tool secret.read"]),
    "load": Case('load("x", "y")\n', ["load"]),
    "open": Case('f = open("/etc/passwd")\n', ["undefined: open"]),
    "exec-and-eval": Case('exec("x = 1")\neval("1")\n', ["undefined: exec", "undefined: eval"]),
    "dunder-import": Case('os = __import__("os")\n', ["undefined: __import__"]),
    "getattr-on-a-binding": Case(
        'f = getattr(hostile, "ping")\n', ["undefined: hostile (a server is not a value: call its tools as hostile."]
    ),
    "getattr-on-a-builtin": Case(
        'g = getattr(json_decode, "__globals__")\n', ["has no .__globals__ field or method"]
    ),
    "sandbox-internals": Case(
        '_sb_call("hostile.ping", {})\n', ["_sb_call: names starting with _sb_ are reserved for the sandbox"]
    ),
    "shadowed-builtins": Case(
        'def call_tool(*a, **k):\n    return "fake"\nresult = hostile.ping()\n', ['result = "pong"'], error=False
    ),
    # malformed Unicode made inside the script
    "invalid-utf8-slice": Case('result = "é"[0:1]\n', ["not valid UTF-8"]),
    # parallel
    "parallel-with-failing-member": Case(
        'parallel([("hostile.nap", {"ms": 50}), ("hostile.fail", {"message": "boom"}), ("hostile.never",)])\n',
        ["parallel: call 1 (hostile.fail) failed: hostile.fail returned an error: ", "boom"],
        within_s=TIMEOUT_S - 1,
    ),
    "try-parallel-with-failing-members": Case(
        'r = try_parallel([("hostile.ping",), ("hostile.fail", {"message": "boom"}), ("nowhere.x",)])\n'
        'result = [x["ok"] for x in r]\n',
        ["result = [true, false, false]"],
        error=False,
    ),
    "parallel-results-over-the-batch-budget": Case(
        'r = try_parallel([("wide.flood", {"mb": 6})] * 3)\n'
        'result = [sorted([x["ok"] for x in r]), len([x for x in r if "parallel batch" in x.get("error", "")])]\n',
        ["result = [[false, true, true], 1]"],
        error=False,
    ),
    "tool-returns-50MB-over-stdio": Case(
        "x = clog.flood(mb=50)\n",
        ["clog.flood failed: its answer is 50.0 MiB, more than the server's max_message_bytes (16 MiB)"], within_s=2),
}


async def test_source_over_the_http_body_limit_gets_an_error_not_a_hang(gw: Gw) -> None:
    code = "# padding\n" * (500 * 1024) + "result = 1\n"  # 5 MiB: over the SDK's 4 MiB request body limit
    started = time.monotonic()
    with anyio.fail_after(20), pytest.raises(MCPError) as caught:
        await _execute(gw.client, code)
    # the SDK answers HTTP 413 before the gateway sees the request, and its client words it
    # "Server returned an error response"
    assert caught.value.message
    assert time.monotonic() - started < 10
    await _ping(gw)


async def test_parallel_fans_out(gw: Gw) -> None:
    code = 'result = parallel([("hostile.nap", {"ms": 100})] * 10)\n'
    await _execute(gw.client, code)  # warm
    best = 10.0
    for _ in range(3):
        started = time.monotonic()
        out = await _execute(gw.client, code)
        best = min(best, time.monotonic() - started)
        assert text_of(out) == "result = " + str([100] * 10), text_of(out)
    assert best < 0.5, best  # sequential would be over 1 s
    await _ping(gw)


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_script(gw: Gw, name: str) -> None:
    case = CASES[name]
    code = case.code() if callable(case.code) else case.code
    started = time.monotonic()
    with anyio.fail_after(case.within_s + 30):
        out = await _execute(gw.client, code)
    elapsed = time.monotonic() - started
    text = text_of(out)
    assert out.is_error == case.error, text[:2000]
    for fragment in case.expect:
        assert fragment in text, (fragment, text[:2000])
    assert elapsed < case.within_s, elapsed
    if case.check is not None:
        case.check(out, text)
    await _ping(gw)
    growth = gw.sample()
    assert growth < MEMORY_BOUND_MB, f"memory grew by {growth:.0f} MB"


async def _ping(gw: Gw) -> None:
    started = time.monotonic()
    with anyio.fail_after(PING_WITHIN_S + 5):
        out = await _execute(gw.client, "result = hostile.ping()")
    assert text_of(out) == 'result = "pong"', text_of(out)
    assert time.monotonic() - started < PING_WITHIN_S


async def test_memory_stayed_bounded(gw: Gw) -> None:
    growth = gw.sample()
    assert growth < MEMORY_BOUND_MB, f"memory grew by {growth:.0f} MB over the corpus"


async def test_meta_tools_answer_hostile_sizes_with_bounds() -> None:
    """Thousands of file names, a huge query, many returned images: bounded answers, quickly."""
    from mcp_gateway import Gateway, call

    gw = Gateway(make_config({"math": stdio("math_server")}))
    async with gw:
        started = anyio.current_time()
        many = await call(gw, "readToolFile", {"fileName": ",".join(f"servers/x{i}.pyi" for i in range(200_000))})
        query = await call(gw, "listToolFiles", {"query": "add " * 500_000})
        assert anyio.current_time() - started < 5
    assert many.is_error and "reads at most 20 files per call; 200000 were named" in text_of(many)
    assert not query.is_error and "math" in text_of(query)


async def test_a_script_returning_many_images_returns_a_bounded_number_quickly() -> None:
    from mcp_gateway import Gateway, call

    gw = Gateway(make_config({"c": stdio("conformance_server", "stdio")}, limits={"max_tool_calls": 500}))
    async with gw:
        started = anyio.current_time()
        out = await call(gw, "executeToolCode", {"code": "result = [c.test_image_content() for i in range(150)]"})
        took = anyio.current_time() - started
    images = [b for b in out.content if b.type == "image"]
    assert not out.is_error, text_of(out)
    assert len(images) == 64 and "86 more returned blocks left out" in out.content[-1].text  # type: ignore[union-attr]
    assert took < 10
