"""Peak resident memory of a sandbox worker against `limits.memory_mb`, per allocation pattern.

Each pattern runs on a fresh worker (`sandbox.process.Worker`, driven by the same
`Conversation` the pool uses) while a thread samples the kernel's high-water mark of the
worker's resident memory (VmHWM in /proc/<pid>/status) every millisecond; the worker's own
report of its peak, when its watchdog stops it, counts too. Prints a markdown table: the
peak against the limit, the outcome, and what stopped the script. The corpus is the one of
`tests/sandbox/test_memory.py` (kept in step by hand: benchmarks do not import tests).

    .venv/bin/python benchmarks/sandbox_memory.py [--memory-mb 256 512] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import ExecutionResult, Limits  # noqa: E402
from sandbox.conversation import Conversation  # noqa: E402
from sandbox.memory import EXIT_MEMORY, MIB, kernel_peak  # noqa: E402
from sandbox.process import Worker  # noqa: E402

CASES: dict[str, str] = {
    "repeat-list-1e9": "x = [1] * 1000000000",
    "repeat-list-1e8": "x = [1] * 100000000",
    "repeat-string": 'x = "x" * 1000000000',
    "list-of-range": "x = list(range(100000000))",
    "dict-comprehension": "d = {i: i for i in range(100000000)}",
    "dict-in-a-loop": "d = {}\nfor i in range(100000000):\n    d[i] = i",
    "string-concatenation-loop": 's = ""\nfor i in range(1000):\n    s += "x" * 10000000',
    "list-doubling": "l = [1]\nfor i in range(40):\n    l = l + l",
    "nested-doubling-to-string": "l = [1]\nfor i in range(40):\n    l = [l, l]\ns = str(l)",
    "list-plus-in-a-loop": "l = []\nfor i in range(1000):\n    l = l + [0] * 4000000",
    "append-loop": 'l = []\nfor i in range(100000000):\n    l.append("x" * 100)',
    "sorted": "x = sorted(range(100000000))",
    "reversed": "x = reversed(range(100000000))",
    "zip": "x = zip(range(50000000), range(50000000))",
    "json-encode": 'x = json_encode(["x" * 100] * 10000000)',
    "json-decode": 'x = json_decode("[" + "[]," * 20000000 + "[]]")',
    "str-of-a-list": "s = str(list(range(50000000)))",
    "join": 's = ",".join(["abcdefgh"] * 100000000)',
    "percent-format": 'x = ["abcdefghij"] * 5000000\ns = "%s%s%s%s%s" % (x, x, x, x, x)',
    "format-method": 'x = ["abcdefghij"] * 5000000\ns = "{}{}{}{}{}".format(x, x, x, x, x)',
    "split": 's = "a," * 100000000\nx = s.split(",")',
    "recursion": "def f(n):\n    return f(n + 1)\nf(0)",
    "tool-arguments": 'util.echo(x=["y" * 1000] * 1000000)',
    "tool-result-decoding": "x = util.nested(n=3000000)",
    "fits: 5M-item list": "x = [1] * 5000000\nresult = len(x)",
    "fits: 50 MB string": 's = "x" * 50000000\nresult = len(s)',
    "fits: 1 GB of garbage": 'n = 0\nfor i in range(100):\n    s = "x" * 10000000\n    n += len(s)\nresult = n',
}


async def tools(name: str, args: dict[str, Any]) -> Any:
    if name == "util.nested":
        return [[] for _ in range(int(args["n"]))]
    return args


def sample_peak(pid: int, out: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        out[0] = max(out[0], kernel_peak(pid) or 0)
        time.sleep(0.001)


def stopped_by(result: ExecutionResult, exit_code: int | None, killed: bool, why: str) -> str:
    """Which layer ended the run, from the worker's exit status (None: alive) and its stderr."""
    if result.error is None:
        return "-"
    if exit_code == EXIT_MEMORY:
        return "worker watchdog (RSS)"
    if killed:
        return "gateway watch (RSS)"
    if exit_code is None:
        return "MemoryError (RLIMIT_DATA)" if result.error.kind == "limit" else result.error.kind
    return f"RLIMIT_DATA: `{why.removeprefix('fatal error: ')[:48]}`"


async def one(name: str, code: str, memory_mb: int, timeout_s: float) -> str:
    limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, max_tool_result_bytes=64 << 20)
    worker = await Worker.spawn(memory_mb)
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=sample_peak, args=(worker.pid, peak, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result, _ = await Conversation(worker, tools, limits).run_timed(code, ["util"])
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        top = max(peak[0], worker.memory_peak())
        why = worker.stderr_summary()
        exit_code = worker.process.returncode
    finally:
        stop.set()
        await worker.kill()
    assert result is not None
    top = max(top, worker.peak_rss)
    if result.error is None:
        outcome = "completed"
    elif result.error.kind == "limit" and "memory" in result.error.message:
        outcome = "memory limit error"
    else:
        outcome = f"{result.error.kind}: {result.error.message[:40]}"
    ratio = top / (memory_mb * MIB)
    return (
        f"| {name} | {memory_mb} | {top / MIB:.0f} | {ratio:.2f} | {outcome} | "
        f"{stopped_by(result, exit_code, worker.over_memory, why)} | {elapsed:.2f} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memory-mb", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--only", nargs="+", default=None, help="case names to run")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    cases = {k: v for k, v in CASES.items() if args.only is None or k in args.only}
    print("| case | limit MiB | peak RSS MiB | peak / limit | outcome | stopped by | s |")
    print("|---|---|---|---|---|---|---|")
    for memory_mb in args.memory_mb:
        for name, code in cases.items():
            print(await one(name, code, memory_mb, args.timeout), flush=True)


if __name__ == "__main__":
    anyio.run(main)
