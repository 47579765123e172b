"""`pip install mcp-gateway` beside each agent framework: it resolves, and downgrades nothing the
framework alone would get (pip's resolver, from the wheel this tree builds, with `--dry-run`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.frameworks import ROOT

pytestmark = pytest.mark.timeout(900)
FRAMEWORKS = ["pydantic-ai-slim[mcp]==2.78.0", "openai-agents==0.24.0"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = folder.glob("mcp_gateway-*.whl")
    return built


def resolve(tmp_path: Path, *requirements: str) -> dict[str, str]:
    """What pip would install for `requirements` into an empty environment: name -> version."""
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), *requirements], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in found}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_gateway_installs_beside_the_framework_without_a_downgrade(
    framework: str, wheel: Path, tmp_path: Path
) -> None:
    alone = resolve(tmp_path, framework)
    together = resolve(tmp_path, framework, str(wheel))
    assert together["mcp-gateway"] and together["mcp"].startswith("2.3.")
    lower = {name: (alone[name], together[name]) for name in alone
             if name in together and _version(together[name]) < _version(alone[name])}
    assert lower == {}, f"installing the gateway beside {framework} downgrades {lower}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split(".") if part.isdigit())
