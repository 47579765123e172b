"""What the benchmark scripts share: child processes, timing, and reading a process's memory."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


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
