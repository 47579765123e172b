"""The official MCP conformance suite and the Inspector CLI, against the fixture alone and through the gateway.

The npm packages are installed (pinned) into `tests/interop/.npm/` on first use; the tests skip only
when `node` or `npm` is missing. The gateway serves the fixture in direct mode with names passed
through, since the suite calls fixed names (`test_simple_text`, `test://static-text`, ...).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from mcp_gateway import Gateway
from tests.helpers import http_fixture, make_config, serve_gateway, stdio
from tests.interop.npm import CONFORMANCE, CONFORMANCE_2026, INSPECTOR, NPM_DIR, node22_first, npm_bin

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

HERE = Path(__file__).parent
EXPECTED_FAILURES = HERE / "conformance-expected-failures.yml"
UPSTREAMS = ["http", "http-legacy", "stdio", "stdio-legacy"]


@pytest.fixture(scope="module")
def conformance() -> Path:
    with node22_first():
        return npm_bin(CONFORMANCE)


@pytest.fixture(scope="module")
def conformance_2026() -> Path:
    with node22_first():
        return npm_bin(CONFORMANCE_2026, NPM_DIR / "conformance-2026")  # a second version: its own prefix


@pytest.fixture(scope="module")
def inspector() -> Path:
    return npm_bin(INSPECTOR)


ALL = ("--suite", "all")
ACTIVE_2026 = ("--spec-version", "2026-07-28", "--suite", "active")


async def run_suite(conformance: Path, url: str, *extra: str, suite: tuple[str, ...] = ALL) -> tuple[int, str]:
    """`conformance server` (`--suite all`, or `suite`) against `url`: its exit code and the end of its output."""
    with anyio.fail_after(200), node22_first():
        done = await anyio.run_process([str(conformance), "server", "--url", url, *suite, *extra],
                                       check=False, stderr=subprocess.STDOUT)
    lines = done.stdout.decode(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(("✓", "✗"))), max(0, len(lines) - 60))
    return done.returncode, "\n".join(lines[start:])


def totals(summary: str) -> tuple[int, int]:
    match = re.search(r"Total: (\d+) passed, (\d+) failed", summary)
    assert match, summary
    return int(match[1]), int(match[2])


@pytest.fixture
async def gateway_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The gateway's `/mcp` in front of the conformance fixture, reached over the parametrized transport."""
    async with gateway_in_front(request.param) as url:
        yield url


@contextlib.asynccontextmanager
async def gateway_in_front(upstream: str) -> AsyncIterator[str]:
    """`upstream` is one of `UPSTREAMS`: the fixture's transport, and `-legacy` for the handshake era only."""
    transport, _, era = upstream.partition("-")
    args = ("--legacy",) if era else ()
    gateway = {"prefix_direct_tools": False}
    if transport == "stdio":
        config = make_config({"conformance": stdio("conformance_server", "stdio", *args, mode="direct")},
                             gateway=gateway)
        async with serve_gateway(Gateway(config)) as url:
            yield url
        return
    async with http_fixture("conformance_server", "http", *args) as upstream:
        config = make_config({"conformance": {"url": upstream, "mode": "direct"}}, gateway=gateway)
        async with serve_gateway(Gateway(config)) as url:
            yield url


async def test_fixture_alone_passes_every_scenario(conformance: Path) -> None:
    async with http_fixture("conformance_server") as url:
        code, summary = await run_suite(conformance, url)
    assert code == 0, summary
    passed, failed = totals(summary)
    assert (passed, failed) == (44, 0), summary


@pytest.mark.parametrize("gateway_url", UPSTREAMS, indirect=True)
async def test_suite_passes_through_the_gateway(conformance: Path, gateway_url: str) -> None:
    """Only the scenarios listed in the expected-failures file may fail, and each of them must."""
    code, summary = await run_suite(conformance, gateway_url, "--expected-failures", str(EXPECTED_FAILURES))
    assert code == 0, summary
    assert totals(summary) == (44, 0), summary


async def test_2026_07_28_suite_passes_through_the_gateway_as_on_the_fixture_alone(conformance_2026: Path) -> None:
    async with http_fixture("conformance_server") as url:
        code, alone = await run_suite(conformance_2026, url, suite=ACTIVE_2026)
    assert code == 0, alone
    for transport in ("http", "stdio"):
        async with gateway_in_front(transport) as url:
            code, through = await run_suite(conformance_2026, url, suite=ACTIVE_2026)
        assert code == 0, through
        assert totals(through) == totals(alone), (transport, through)


@pytest.mark.parametrize("gateway_url", ["http"], indirect=True)
async def test_inspector_cli_lists_through_the_gateway(inspector: Path, gateway_url: str) -> None:
    async def cli(*args: str) -> dict[str, list[dict[str, str]]]:
        with anyio.fail_after(60):
            done = await anyio.run_process([str(inspector), "--cli", gateway_url, *args], check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    tools = await cli("--method", "tools/list")
    assert "test_simple_text" in {t["name"] for t in tools["tools"]}
    resources = await cli("--method", "resources/list")
    assert "test://static-text" in {r["uri"] for r in resources["resources"]}
    prompts = await cli("--method", "prompts/list")
    assert "test_simple_prompt" in {p["name"] for p in prompts["prompts"]}
