"""What the benchmark scripts share: ports, child processes, timing, and reading a process's memory.

The benchmarks stand on this module and import nothing from `tests/`: the fixture upstreams
there are run as scripts, by path (`fixture_server`, `fixture_stdio`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_port(port: int, timeout_s: float) -> None:
    """Until something accepts connections on 127.0.0.1:`port`; `TimeoutError` after `timeout_s`."""
    with anyio.fail_after(timeout_s):
        while True:
            with contextlib.suppress(OSError):
                await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                return
            await anyio.sleep(0.05)


def toml_table(name: str, values: Mapping[str, Any]) -> str:
    """`[name]` with `values` (strings, numbers, booleans and lists of them, which JSON spells as TOML does)."""
    return f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def fixture_stdio(fixture: str, *args: str, **extra: Any) -> dict[str, Any]:
    """A `[servers.<name>]` table launching `tests/fixtures/<fixture>.py` over stdio."""
    return {"command": sys.executable, "args": [str(FIXTURES / f"{fixture}.py"), *args], **extra}


@contextlib.contextmanager
def process(args: list[str], stop_s: float = 10, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` quietly for the block (`popen`: more `subprocess.Popen` arguments, `env` say); terminate it
    after (kill if it does not stop in `stop_s`)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_s)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.asynccontextmanager
async def fixture_server(fixture: str) -> AsyncIterator[str]:
    """`tests/fixtures/<fixture>.py` serving streamable HTTP as its own process on a free port; yields its URL."""
    port = free_port()
    with process([sys.executable, str(FIXTURES / f"{fixture}.py"), "http", str(port)]):
        await wait_for_port(port, 60)
        yield f"http://127.0.0.1:{port}/mcp"


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
        config = Path(tmp) / "gw.toml"
        gateway = {"state_dir": f"{tmp}/state", "port": port, "anonymous": True, **settings}
        config.write_text(toml_table("gateway", gateway) + servers)
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


async def concurrent(open_client: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
                     call: Callable[[Any, int, int], Awaitable[Any]], clients: int, calls: int
                     ) -> tuple[float, list[float], int]:
    """`clients` clients at once, each making `calls` calls (`call(client, n, i)` for client n's i-th):
    the elapsed seconds, each call's milliseconds, and how many failed (an error result or an exception)."""
    samples: list[float] = []
    errors = 0

    async def one(n: int) -> None:
        nonlocal errors
        async with open_client() as client:
            for i in range(calls):
                start = time.perf_counter()
                try:
                    errors += bool(getattr(await call(client, n, i), "is_error", False))
                except Exception:
                    errors += 1
                samples.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for n in range(clients):
            tg.start_soon(one, n)
    return time.perf_counter() - started, samples, errors


@contextlib.asynccontextmanager
async def postgres_schema(url: str, prefix: str = "bench_") -> AsyncIterator[str]:
    """`url` with its connections in a new, empty schema (`?search_path=`), dropped afterwards (over a
    new connection, so a server restarted meanwhile is no trouble)."""
    import asyncpg  # only the PostgreSQL benchmarks and tests need it

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    schema = prefix + uuid.uuid4().hex[:16]
    await admin(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}?search_path={schema}"
    finally:
        await admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
