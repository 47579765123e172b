"""What the benchmark scripts share: child processes, timing, and reading a process's memory."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, wait_for_port  # noqa: E402


@contextlib.contextmanager
def process(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` quietly for the block; terminate it after (kill if it does not stop in 10 s)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def check(result: Any) -> None:
    """Stop the benchmark on a failed call (`is_error`) or a failed `Sandbox.run` (`error`)."""
    if getattr(result, "is_error", False):
        raise SystemExit(f"a benchmark call failed: {result}")
    error = getattr(result, "error", None)
    if error is not None:
        raise SystemExit(f"a benchmark script failed: {error.format()}")


@contextlib.asynccontextmanager
async def gateway(servers: str, **settings: Any) -> AsyncIterator[tuple[str, int]]:
    """`mcp-gateway serve` as its own process on a free port, serving the `[servers.*]` tables in `servers`.

    `settings` are extra `[gateway]` keys; the state directory is temporary. Yields the `/mcp` URL and the pid.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        table = {"state_dir": f"{tmp}/state", "port": port, **settings}
        config = Path(tmp) / "gw.toml"
        config.write_text("[gateway]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items()) + servers)
        command = [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config), "--log-level", "warning"]
        with process(command) as proc:
            await wait_for_port(port, 60)
            yield f"http://127.0.0.1:{port}/mcp", proc.pid


async def timed(call: Callable[[], Awaitable[Any]], n: int, warmup: int = 20) -> list[float]:
    """Milliseconds of `n` awaited calls after `warmup` untimed ones, each result checked."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - start) * 1000)
        check(result)
    return samples


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
