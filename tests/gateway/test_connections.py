"""Connections from outside cannot hold the gateway: silent or slow clients are cut off, floods stay quiet."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[int, Path]]:
    """`mcp-gateway serve` with a 1 s header deadline and room for 50 connections; yields its port and log."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-connections-"))
    port = free_port()
    cfg = tmp / "gw.toml"
    cfg.write_text(f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp / "state"}"\nheader_timeout_s = 1\n'
                   "max_connections = 50\n")
    log = tmp / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield port, log
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _open(port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def test_a_connection_that_never_finishes_its_headers_is_closed(gateway: tuple[int, Path]) -> None:
    port, _ = gateway
    silent, dribbling = _open(port), _open(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    for sock in (silent, dribbling):
        with sock:
            sock.settimeout(10)
            assert sock.recv(1024) == b"", "the gateway closes it without an answer"
    assert time.monotonic() - started < 5


def test_silent_connections_do_not_lock_others_out_for_long(gateway: tuple[int, Path]) -> None:
    port, _ = gateway
    squatters = [_open(port) for _ in range(60)]  # more than max_connections
    try:
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, "served again once the header deadline closed the squatters"
    finally:
        for sock in squatters:
            sock.close()


def test_a_flood_of_garbage_requests_does_not_flood_the_log(gateway: tuple[int, Path]) -> None:
    port, log = gateway
    before = log.stat().st_size
    for _ in range(300):
        with _open(port, b"\x16\x03\x01 not http at all\r\n\r\n") as sock:
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.recv(1024)
    time.sleep(0.5)
    assert log.stat().st_size - before < 4_000, log.read_text(errors="replace")[-2000:]  # 300 lines without a cap
