"""A worker's environment: what Python and the Go runtime need, none of the gateway's secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.process import Worker, worker_env

from .conftest import FAST, SERVERS, FakeTools

pytestmark = pytest.mark.anyio


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


async def test_a_worker_does_not_inherit_the_gateways_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "xyz")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("GOMAXPROCS", "1")
    worker = await Worker.spawn(FAST.memory_mb)
    try:
        env = _environ(worker.pid)
        assert "MY_SECRET_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
        assert "hunter2" not in Path(f"/proc/{worker.pid}/environ").read_text(errors="replace")
        assert env["LC_ALL"] == "C.UTF-8" and env["GOMAXPROCS"] == "1" and "PATH" in env
        assert set(env) <= set(worker_env()) and env["PYTHONPATH"] == worker_env()["PYTHONPATH"]
    finally:
        await worker.kill()


def test_worker_env_keeps_only_what_a_worker_needs() -> None:
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/home/gw",
        "LANG": "C.UTF-8",
        "LC_CTYPE": "C.UTF-8",
        "PYTHONPATH": "/opt/lib",
        "GODEBUG": "madvdontneed=1",
        "MCP_GATEWAY_KEY": "k",
        "GITHUB_TOKEN": "t",
        "OPENAI_API_KEY": "o",
        "DATABASE_URL": "postgres://u:p@h/db",
        "LD_PRELOAD": "/tmp/evil.so",
    }
    env = worker_env(parent)
    assert set(env) == {"PATH", "HOME", "LANG", "LC_CTYPE", "PYTHONPATH", "GODEBUG"}
    assert env["PYTHONPATH"].endswith("/opt/lib") and env["PYTHONPATH"] != "/opt/lib"


async def test_scripts_run_in_the_minimal_environment(monkeypatch: pytest.MonkeyPatch, tools: FakeTools) -> None:
    from sandbox import Sandbox

    monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2")
    async with Sandbox(FAST, workers=1) as sb:
        run = await sb.run('result = calc.add(a=1, b=2)\nprint("é")', SERVERS, tools)
    assert run.error is None and run.value == 3 and run.output == "é\n"
