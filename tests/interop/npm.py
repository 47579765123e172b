"""Pinned npm packages for the interop tests, installed into `tests/interop/.npm/` on first use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

NPM_DIR = Path(__file__).parent / ".npm"
CONFORMANCE = ("@modelcontextprotocol/conformance", "0.1.13", "conformance")
INSPECTOR = ("@modelcontextprotocol/inspector", "0.15.0", "mcp-inspector")
EVERYTHING = ("@modelcontextprotocol/server-everything", "2026.8.31", "mcp-server-everything")
CODEX = ("@openai/codex", "0.169.0", "codex")  # a JS launcher for a native binary (an optional dependency)


def npm_bin(package: tuple[str, str, str]) -> Path:
    """The package's executable under `tests/interop/.npm`, installed with npm when missing or not pinned."""
    name, version, executable = package
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable(f"node and npm are needed for {name} (the interop tests run real npm packages)")
    manifest = NPM_DIR / "node_modules" / name / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
        NPM_DIR.mkdir(exist_ok=True)
        try:
            subprocess.run(["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", "--loglevel=error",
                            f"{name}@{version}"], check=True, timeout=280, capture_output=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            said = (exc.stderr or b"").decode(errors="replace")[-500:]
            unavailable(f"npm could not install {name}@{version}: {said}")
    return NPM_DIR / "node_modules" / ".bin" / executable


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it where `MCP_GATEWAY_REQUIRE_NODE` is set (by .ci/run: CI never skips the suite)."""
    if os.environ.get("MCP_GATEWAY_REQUIRE_NODE"):
        pytest.fail(reason)
    pytest.skip(reason)
