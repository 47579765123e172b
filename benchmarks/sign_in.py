"""What signing in costs per request: one trivial direct-mode call with an API key against the same call with a
sign-in token (a JWT, an opaque token introspected with the answers cached, introspected at every request).

Everything runs on 127.0.0.1: a real OpenID provider (`oidc-provider`, run by `tests/identity/idp.py`, the
provider the sign-in tests use: the one exception to "benchmarks import nothing from `tests/`", so that nothing
of it is copied here), and three `mcp-gateway serve` processes, one per `[sign_in]` setting, each with the
math fixture over stdio as a direct-mode server (the audit log is written as always):

- `jwt`: `tokens = "jwt"`;
- `cached`: `tokens = "introspection"`, `cache_s = 60`;
- `uncached`: `tokens = "introspection"`, `cache_s = 0` (every request asks the provider).

Each gateway is called with an API key made with the CLI (so each request looks it up in SQLite) and with its
kind of token, from the provider's own login (code + PKCE) for alice, whose group maps to every tool. The
baseline is the API key on the `jwt` gateway; each token is also compared with the API key on its own gateway
(the same process), and the keys on the other two gateways show how far apart identical calls to two
processes land on this machine.

C clients per way keep their sessions open for the whole run. Each round, in orders shuffled each round so
that the machine's other load falls on all of them alike: one client of each way makes a call, the ways
taking turns call by call (the cost per request, without queueing), a few times; then each way's C clients
make N calls each at once (p50/p95 and calls/s), one way after another, while the CPU time the gateway's
process (and the provider's) uses is read from /proc: on a shared, loaded machine it moves far less than the
times. Then, in this process, one check of each kind alone (µs), in rounds as well.

    .venv/bin/python benchmarks/sign_in.py [--clients 4] [--calls 20] [--alone 15] [--rounds 12] [--checks 250]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import concurrent, fixture_stdio, free_port, process, toml_table, wait_for_port
from benchmarks.scale import make_key
from mcp_gateway.config import SignInSettings
from mcp_gateway.config_files import parse_config
from mcp_gateway.governance.keys import KeyRing
from mcp_gateway.logs import configure_logging
from mcp_gateway.oauth import SignIn
from mcp_gateway.storage import SQLiteStorage
from tests.identity.idp import RESOURCE_SERVER_CLIENT, IdentityProvider, Resource, token_for

INTROSPECTION = {"tokens": "introspection", "client_id": RESOURCE_SERVER_CLIENT.client_id,
                 "client_secret": RESOURCE_SERVER_CLIENT.client_secret}
GATEWAYS: dict[str, dict[str, Any]] = {  # each gateway's [sign_in] settings, less issuer and resource
    "jwt": {"tokens": "jwt"},
    "cached": {**INTROSPECTION, "cache_s": 60},
    "uncached": {**INTROSPECTION, "cache_s": 0},
}
SHOWN = {"jwt": '`tokens = "jwt"`', "cached": "introspection, `cache_s = 60`",
         "uncached": "introspection, `cache_s = 0`"}
WAYS = [(gateway, presents) for gateway in GATEWAYS for presents in ("key", "token")]
"""Each gateway with an API key (its row is the baseline for that gateway's token) and with its kind of token."""
BASE = ("jwt", "key")
"""The baseline of every row: the API key on the first gateway."""
CONFIG_KEY = "bench-config-key-0123456789"  # a key in the config, for the isolated checks


def shown(way: tuple[str, str]) -> str:
    gateway, presents = way
    token = "JWT access token" if gateway == "jwt" else "opaque token"
    return f"| {SHOWN[gateway]} | {'API key' if presents == 'key' else token} "



def config(state: Path, port: int, sign_in: dict[str, Any]) -> str:
    return (toml_table("gateway", {"state_dir": str(state), "port": port})
            + toml_table("servers.math", fixture_stdio("math_server", mode="direct"))
            + toml_table("groups.all", {"tools": ["*"]})
            + toml_table("sign_in", sign_in)
            + toml_table("sign_in.groups.engineering", {"groups": ["all"]}))  # alice's group


@contextlib.asynccontextmanager
async def serve(text: str, folder: Path, port: int) -> AsyncIterator[int]:
    """`mcp-gateway serve` with the config `text` until the block ends; yields its pid."""
    folder.mkdir(exist_ok=True)
    path = folder / "gw.toml"
    path.write_text(text)
    command = [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(path), "--log-level", "warning"]
    with process(command) as proc:
        await wait_for_port(port, 60)
        yield proc.pid


@contextlib.asynccontextmanager
async def bearer(url: str, secret: str) -> AsyncIterator[Client]:
    """An SDK client sending `secret` as its bearer token. Its sessions sit idle while the other ways run, so its
    HTTP client gets the timeouts the SDK gives its own (a 300 s read: a GET stream may stay quiet)."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        yield client


def cpu_s(pid: int) -> float:
    """The CPU seconds (user and system, every thread) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_running(script: str) -> int:
    """The pid of this process's child whose command line names `script` (the provider's node process)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid() \
                    and script.encode() in (stat.parent / "cmdline").read_bytes():
                return int(stat.parent.name)
    raise SystemExit(f"no child process runs {script}")


def quantiles(ms: list[float]) -> tuple[float, float]:
    """p50 and p95."""
    return statistics.median(ms), statistics.quantiles(ms, n=20)[18]


async def load(args: argparse.Namespace, idp: IdentityProvider, resources: dict[str, str], folder: Path,
               stack: contextlib.AsyncExitStack) -> tuple[str, str]:
    """The load tables, printed; returns the JWT and the cached gateway's opaque token (for the isolated checks)."""
    keys: dict[str, str] = {}
    pids: dict[str, int] = {}
    for name, sign_in in GATEWAYS.items():
        port = int(resources[name].split(":")[2].split("/")[0])
        text = config(folder / name / "state", port, {"issuer": idp.issuer, "resource": resources[name], **sign_in})
        (folder / f"{name}-cli").mkdir()
        keys[name] = make_key(text, folder / f"{name}-cli")  # the same state directory: the gateway's store
        pids[name] = await stack.enter_async_context(serve(text, folder / name, port))
    provider = child_running("idp.js")
    tokens = {name: (await token_for(idp, "alice", url))["access_token"] for name, url in resources.items()}
    assert tokens["jwt"].count(".") == 2 and tokens["cached"].count(".") == 0  # a JWT, and opaque ones

    pools: dict[tuple[str, str], list[Client]] = {}
    for way in WAYS:
        gateway, presents = way
        secret = keys[gateway] if presents == "key" else tokens[gateway]
        pools[way] = [await stack.enter_async_context(bearer(resources[gateway], secret)) for _ in range(args.clients)]

    async def run(way: tuple[str, str], calls: int) -> tuple[float, list[float], int]:
        pool = iter(pools[way])
        return await concurrent(lambda: contextlib.nullcontext(next(pool)),
                                lambda c, n, i: c.call_tool("math_add", {"a": i, "b": n}), args.clients, calls)

    for way in WAYS:  # warm up: keys fetched, sessions and connections in use
        await run(way, 10)
    samples: dict[tuple[str, str], list[float]] = {way: [] for way in WAYS}
    elapsed = dict.fromkeys(WAYS, 0.0)
    errors = dict.fromkeys(WAYS, 0)
    rates: dict[tuple[str, str], list[float]] = {way: [] for way in WAYS}  # calls/s of each round
    alone: dict[tuple[str, str], list[float]] = {way: [] for way in WAYS}  # one client, one call at a time
    cpu = dict.fromkeys(WAYS, 0.0)  # CPU seconds its gateway process used while its clients ran at once
    provider_cpu = dict.fromkeys(WAYS, 0.0)  # and the provider's process
    loads = []
    for r in range(args.rounds):
        shuffle = random.Random(r).shuffle  # no way always follows the same other one
        for _ in range(args.alone):  # one client: the ways' calls taking turns, one at a time
            order = list(WAYS)
            shuffle(order)
            for way in order:
                start = time.perf_counter()
                problem: object = None
                try:
                    result = await pools[way][0].call_tool("math_add", {"a": 1, "b": 2})
                    problem = result if result.is_error else None
                except Exception as exc:  # counted with the errors, and said once
                    problem = exc
                if problem is not None:
                    errors[way] += 1
                    if errors[way] == 1:
                        print(f"a call {shown(way)}failed: {problem!r}", file=sys.stderr)
                    continue
                alone[way].append((time.perf_counter() - start) * 1000)
        order = list(WAYS)
        shuffle(order)
        for way in order:  # then each way's clients at once, one way after another
            before, provider_before = cpu_s(pids[way[0]]), cpu_s(provider)
            seconds, ms, failed = await run(way, args.calls)
            cpu[way] += cpu_s(pids[way[0]]) - before
            provider_cpu[way] += cpu_s(provider) - provider_before
            samples[way] += ms
            elapsed[way] += seconds
            errors[way] += failed
            rates[way].append(len(ms) / seconds)
        loads.append(os.getloadavg()[0])

    def same(way: tuple[str, str]) -> tuple[str, str]:
        return way[0], "key"

    def versus(way: tuple[str, str], text: str) -> str:  # a key is not compared with itself
        return "-" if way[1] == "key" else text

    print(f"{args.rounds} rounds, each: {args.alone} calls of each way by one client, the ways taking turns call by "
          f"call, then each way's {args.clients} clients making {args.calls} calls each at once, the ways one after "
          f"another; orders shuffled; load average during the rounds {min(loads):.1f}-{max(loads):.1f}. "
          f"Baseline: the API key on the `jwt` gateway; \"same gateway\": the API key on the row's gateway\n")
    p50_alone = {way: statistics.median(ms) for way, ms in alone.items()}
    calls = args.rounds * args.clients * args.calls  # per way, at once (the CPU is measured then)
    cpu_ms = {way: seconds * 1000 / calls for way, seconds in cpu.items()}
    print("| gateway | caller presents | 1 client p50 ms | p95 ms | p50 vs baseline | p50 vs same gateway "
          "| p50 - same gateway, ms | gateway CPU ms per call | CPU vs same gateway | provider CPU ms per call |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for way in WAYS:
        p50, p95 = quantiles(alone[way])
        key = p50_alone[same(way)]
        print(f"{shown(way)}| {p50:.2f} | {p95:.2f} | {p50 / p50_alone[BASE]:.2f}x "
              f"| {versus(way, f'{p50 / key:.2f}x')} | {versus(way, f'{p50 - key:+.2f}')} | {cpu_ms[way]:.2f} "
              f"| {versus(way, f'{cpu_ms[way] / cpu_ms[same(way)]:.2f}x')} | {provider_cpu[way] * 1000 / calls:.2f} |")
    print()
    p50s = {way: quantiles(ms) for way, ms in samples.items()}
    rate = {way: len(samples[way]) / elapsed[way] for way in WAYS}
    print(f"| gateway | caller presents | p50 ms | p95 ms | calls/s, {args.clients} clients | p50 vs baseline "
          "| p95 vs baseline | calls/s vs baseline | calls/s vs same gateway | the same per round (keys: vs baseline): "
          "median (range) | errors, all calls |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for way in WAYS:
        (p50, p95), (base_p50, base_p95) = p50s[way], p50s[BASE]
        reference = BASE if way[1] == "key" else same(way)
        per_round = [mine / theirs for mine, theirs in zip(rates[way], rates[reference], strict=True)]
        spread = "-" if way == BASE else \
            f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"
        print(f"{shown(way)}| {p50:.2f} | {p95:.2f} | {rate[way]:.0f} | {p50 / base_p50:.2f}x | {p95 / base_p95:.2f}x "
              f"| {rate[way] / rate[BASE]:.2f}x | {versus(way, f'{rate[way] / rate[same(way)]:.2f}x')} | {spread} "
              f"| {errors[way]} |")
    return tokens["jwt"], tokens["cached"]


async def isolated(args: argparse.Namespace, idp: IdentityProvider, resources: dict[str, str], jwt_token: str,
                   opaque: str, folder: Path) -> None:
    """One check of each kind alone, in this process (the provider's keys and the introspection answer fetched
    once before), in rounds with the order rotated; µs per check."""
    gateway_config = parse_config({
        "gateway": {"state_dir": str(folder / "isolated")}, "groups": {"all": {"tools": ["*"]}},
        "keys": {"cfg": {"key": CONFIG_KEY, "groups": ["all"]}},
        "sign_in": {"issuer": idp.issuer, "resource": resources["jwt"]},
    })
    storage = SQLiteStorage(folder / "isolated" / "gateway.db")
    ring = KeyRing(gateway_config, storage)
    stored = await ring.create("bench", None, ["all"])
    verifier = ring.sign_in
    assert verifier is not None
    introspecting = SignIn(SignInSettings.model_validate(
        {"issuer": idp.issuer, "resource": resources["cached"], **GATEWAYS["cached"]}))
    checks: dict[str, Callable[[], Awaitable[Any]]] = {
        "API key made with the CLI (hash, SQLite lookup in a thread)": lambda: ring.authenticate(stored),
        "API key in the config (hash, compare)": lambda: ring.authenticate(CONFIG_KEY),
        "JWT (RS256 signature, claims)": lambda: verifier.claims(jwt_token),
        "opaque token, cached introspection answer": lambda: introspecting.claims(opaque),
    }
    try:
        samples: dict[str, list[float]] = {label: [] for label in checks}
        for check in checks.values():  # warm up: keys and the introspection answer fetched
            for _ in range(50):
                assert await check()
        labels = list(checks)
        for r in range(args.rounds):
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                check = checks[label]
                for _ in range(args.checks):
                    start = time.perf_counter()
                    found = await check()
                    samples[label].append((time.perf_counter() - start) * 1e6)
                    assert found
    finally:
        await verifier.aclose()
        await introspecting.aclose()
        await storage.close()
    base = statistics.median(samples[labels[0]])
    config_key = statistics.median(samples[labels[1]])
    print(f"\none check alone, in process: {args.rounds} rounds x {args.checks} per kind, interleaved\n")
    print("| check | median µs | p95 µs | vs key made with the CLI | vs key in the config |")
    print("|---|---|---|---|---|")
    for label in labels:
        p50 = statistics.median(samples[label])
        p95 = statistics.quantiles(samples[label], n=20)[18]
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {p50 / base:.2f}x | {p50 / config_key:.2f}x |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20, help="calls per client per round")
    parser.add_argument("--alone", type=int, default=15, help="one-client calls per way per round")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--checks", type=int, default=250, help="isolated checks per kind per round")
    args = parser.parse_args()
    configure_logging("warning")  # the isolated checks run the gateway's code in this process
    started = time.monotonic()
    resources = {name: f"http://127.0.0.1:{free_port()}/mcp" for name in GATEWAYS}
    with tempfile.TemporaryDirectory() as tmp, \
            IdentityProvider({resources["jwt"]: Resource("jwt"), resources["cached"]: Resource("opaque"),
                              resources["uncached"]: Resource("opaque")}, access_token_ttl=3600) as idp:
        async with contextlib.AsyncExitStack() as stack:
            jwt_token, opaque = await load(args, idp, resources, Path(tmp), stack)
        await isolated(args, idp, resources, jwt_token, opaque, Path(tmp))
    print(f"\n{time.monotonic() - started:.0f} s in all, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    anyio.run(main)
