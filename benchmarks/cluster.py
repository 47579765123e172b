"""Gateway replicas as processes behind HAProxy (round robin, no stickiness), all on loopback.

Used by `scale.py` and by the replica tests. Each replica is `mcp-gateway serve` with the same
config and its own `[storage] replica` name; HAProxy checks `/healthz` every 500 ms and retries
a refused connection on another replica.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from benchmarks.common import free_port, toml_table, wait_for_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@dataclass
class Replica:
    name: str
    port: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(self.config),
                   "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@dataclass
class Cluster:
    url: str
    """The load balancer's `/mcp`."""
    replicas: list[Replica] = field(default_factory=list)


def haproxy_config(port: int, replicas: list[Replica]) -> str:
    servers = "".join(f"    server {r.name} 127.0.0.1:{r.port} check\n" for r in replicas)
    return f"""global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 2
    option redispatch
frontend gateway
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}"""


async def _healthy(port: int) -> None:
    """Until the replica's `/healthz` answers 200 (its store is open and it listens to the others)."""
    with anyio.fail_after(60):
        async with httpx.AsyncClient() as http:
            while (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code != 200:
                await anyio.sleep(0.05)


@contextlib.asynccontextmanager
async def cluster(config: str, replicas: int, *, balancer: bool = True) -> AsyncIterator[Cluster]:
    """`replicas` gateway processes serving `config` (TOML text without `[storage] replica`), and HAProxy
    in front of them unless `balancer` is false (then `url` is the first replica's)."""
    with tempfile.TemporaryDirectory() as tmp:
        members = []
        for i in range(1, replicas + 1):
            path = Path(tmp) / f"r{i}.toml"
            path.write_text(config.replace("[storage]\n", "[storage]\n" + f'replica = "r{i}"\n', 1)
                            if "[storage]\n" in config else config + toml_table("storage", {"replica": f"r{i}"}))
            members.append(Replica(f"r{i}", free_port(), path))
        lb: subprocess.Popen[bytes] | None = None
        try:
            for r in members:
                r.start()
            for r in members:
                await wait_for_port(r.port, 60)
                await _healthy(r.port)
            url = members[0].url
            if balancer:
                port = free_port()
                (Path(tmp) / "haproxy.cfg").write_text(haproxy_config(port, members))
                lb = subprocess.Popen([HAPROXY, "-f", str(Path(tmp) / "haproxy.cfg"), "-db"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await wait_for_port(port, 30)
                await anyio.sleep(0.6)  # the first health checks
                url = f"http://127.0.0.1:{port}/mcp"
            yield Cluster(url, members)
        finally:
            if lb is not None:
                lb.terminate()
                lb.wait(timeout=10)
            for r in members:
                r.kill(signal.SIGTERM)
