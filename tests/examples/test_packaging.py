"""The project builds as a wheel holding the three packages and the `mcp-gateway` command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_pip_wheel_builds_with_every_package_and_the_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=220)
    (wheel,) = tmp_path.glob("mcp_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("mcp_gateway/cli.py", "mcp_gateway/server/app.py", "mcp_gateway/governance/keys.py",
                   "mcp_gateway/storage/sqlite.py", "mcp_gateway/codemode/scripts.py", "stubs/render.py",
                   "sandbox/worker.py", "mcp_gateway/storage/postgres.py",
                   "mcp_gateway/storage/sql/sqlite/0001_keys_and_audit.sql",
                   "mcp_gateway/storage/sql/postgres/0001_initial.sql"):
        assert module in names, module
    assert not [n for n in names if n.startswith("tests/")]
    stale = [n for n in names if n.endswith(".py") and not (ROOT / n).exists()]
    assert stale == [], "modules that are no longer in the source tree (a leftover build/ directory?)"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "mcp-gateway = mcp_gateway.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
