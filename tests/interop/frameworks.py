"""What the agent-framework tests share: gateway configs and processes, the examples, token counts.

Each framework test runs a real `mcp-gateway serve` (HTTP on 127.0.0.1, or `--stdio` launched by
the framework) in front of real fixture upstreams: `math` and `text` (the script crosses both) and
`github`, the 45 tools a real GitHub server listed (`benchmarks/data/github.json`), so that the
catalog a framework would send without Code Mode has a realistic size.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.common import process
from mcp_gateway.tokens import count_tokens
from tests.helpers import FIXTURES, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "frameworks"
DEMO = ROOT / "examples" / "demo"
META_TOOLS = ["listToolFiles", "readToolFile", "getToolDocs", "executeToolCode"]

# The scripted models' plan for the fixture upstreams: list, read one stub, run one script over two upstreams.
STUB = "servers/text.pyi"
SCRIPT = (
    'n = text.count(text="the quick brown fox")\n'
    'total = math.add(a=n["words"], b=n["chars"])\n'
    'print("words:", n["words"])\n'
    'result = {"words": n["words"], "total": total}'
)
SCRIPT_RESULT = '{"words": 4, "total": 23}'  # 4 words, 19 characters


def fixture_servers() -> dict[str, dict[str, Any]]:
    return {
        "math": {"command": sys.executable, "args": [str(FIXTURES / "math_server.py")]},
        "text": {"command": sys.executable, "args": [str(FIXTURES / "text_server.py")]},
        "github": {"command": sys.executable,
                   "args": [str(FIXTURES / "catalog_server.py"), str(ROOT / "benchmarks" / "data" / "github.json")]},
    }


def demo_servers() -> dict[str, dict[str, Any]]:
    """The demo's two Code Mode upstreams (`examples/demo/`), which the examples' scripted models expect."""
    return {name: {"command": sys.executable, "args": [str(DEMO / f"{name}.py")], "cwd": str(DEMO)}
            for name in ("inventory", "orders")}


def write_config(folder: Path, servers: Mapping[str, Mapping[str, Any]], **gateway: Any) -> Path:
    """A gateway.toml in `folder` (its state there too); `gateway` adds `[gateway]` keys (port, default_mode)."""
    settings = {"state_dir": str(folder / "state"), "anonymous": True, **gateway}
    lines = ["[gateway]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    for name, table in servers.items():
        lines += ["", f"[servers.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path = folder / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def serve_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config), "--log-level", "warning", *extra]


@contextlib.asynccontextmanager
async def gateway_process(servers: Mapping[str, Mapping[str, Any]], **gateway: Any) -> AsyncIterator[str]:
    """`mcp-gateway serve` as its own process on a free loopback port; yields the /mcp URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mcp-gateway-frameworks-") as tmp:
        config = write_config(Path(tmp), servers, port=port, **gateway)
        with process(serve_command(config)):
            await wait_for_port(port, 60)
            yield f"http://127.0.0.1:{port}/mcp"


@contextlib.contextmanager
def stdio_config(servers: Mapping[str, Mapping[str, Any]]) -> Iterator[list[str]]:
    """The command (a list) that serves a gateway for `servers` over stdio, for a framework to launch."""
    with tempfile.TemporaryDirectory(prefix="mcp-gateway-frameworks-") as tmp:
        yield serve_command(write_config(Path(tmp), servers), "--stdio")


def load_example(name: str) -> ModuleType:
    """`examples/frameworks/<name>.py` as a module: the tests drive the examples' own scripted models."""
    spec = importlib.util.spec_from_file_location(f"frameworks_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(python: str | Path, name: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([str(python), str(EXAMPLES / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def payload_tokens(definitions: list[dict[str, Any]]) -> int:
    """cl100k tokens of tool definitions as a framework hands them to its model (JSON, as on the wire)."""
    return count_tokens(json.dumps(definitions, ensure_ascii=False))
