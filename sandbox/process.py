"""One worker process as seen from the gateway: spawn, exchange frames, kill.

Workers are fresh interpreters started with `subprocess` (never a fork of the gateway),
each in its own session so terminal signals reach only the gateway. Their stderr goes to
an unnamed temporary file rather than a pipe: the Go runtime writes long traces when it
aborts, and an undrained pipe could block a dying worker; the file's tail is logged instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .protocol import HEADER, MAX_FRAME, ProtocolError, pack, pack_encoded, unpack

log = logging.getLogger("sandbox")

READY_TIMEOUT_S = 20.0
_JOIN_BELOW = 1 << 16
EXIT_WAIT_S = 2.0
_TELLING = ("fatal error:", "runtime:", "panic:", "SIG", "Traceback", "MemoryError")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class SandboxError(RuntimeError):
    """The sandbox itself cannot work (a worker will not start); not the script's fault."""


def _worker_env() -> dict[str, str]:
    """The gateway's environment, with this package importable wherever the gateway runs from."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
    return env


class Worker:
    """A running worker process and its frame streams."""

    def __init__(self, process: Process, stderr: IO[bytes]) -> None:
        self.process = process
        self.stderr = stderr
        assert process.stdout is not None and process.stdin is not None
        self._reader = BufferedByteReceiveStream(process.stdout)
        self._writer = process.stdin

    @classmethod
    async def spawn(cls, memory_mb: int) -> Worker:
        """Start a worker and wait for its `ready` frame (so imports are done before any run)."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the Worker, closed in kill())
        command = [sys.executable, "-m", "sandbox.worker", "--memory-mb", str(memory_mb)]
        try:
            process = await anyio.open_process(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=_worker_env(),
                start_new_session=True,
            )
        except BaseException:
            stderr.close()
            raise
        worker = cls(process, stderr)
        try:
            with anyio.fail_after(READY_TIMEOUT_S):
                hello = await worker.receive(4096)
        except BaseException as exc:
            reason = worker.stderr_summary() or repr(exc)
            await worker.kill()
            if isinstance(exc, Exception):
                raise SandboxError(f"sandbox worker did not start: {reason}") from exc
            raise
        if hello is None or hello.get("op") != "ready":
            reason = worker.stderr_summary() or "no output"
            await worker.kill()
            raise SandboxError(f"sandbox worker did not start: {reason}")
        return worker

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, message: dict[str, Any]) -> bool:
        """Write one frame; False if the worker is gone. May raise `BoundaryError` from encoding."""
        data = pack(message)
        try:
            await self._writer.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return False
        return True

    async def send_encoded(self, body: str) -> bool:
        """Write one frame whose body is already JSON text; False if the worker is gone."""
        try:
            if len(body) <= _JOIN_BELOW:
                await self._writer.send(pack_encoded(body))
            else:  # large: header and body as two writes rather than one more copy
                data = body.encode("ascii")
                if len(data) > MAX_FRAME:
                    raise ProtocolError(f"frame of {len(data)} bytes is too large")
                await self._writer.send(HEADER.pack(len(data)))
                await self._writer.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return False
        return True

    async def receive(self, max_bytes: int) -> dict[str, Any] | None:
        """Read one frame; None if the worker closed its output (it died).

        Raises `ProtocolError` for a frame over `max_bytes`, before reading its body.
        """
        try:
            (size,) = HEADER.unpack(await self._reader.receive_exactly(HEADER.size))
            if size > max_bytes:
                raise ProtocolError(f"worker sent a frame of {size} bytes (at most {max_bytes} expected)")
            return unpack(await self._reader.receive_exactly(size))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return None

    async def exit_code(self) -> int | None:
        """The exit status of a worker that closed its output; killed if it lingers."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(EXIT_WAIT_S):
            return await self.process.wait()
        await self.kill()
        return self.process.returncode

    async def kill(self) -> None:
        """Kill the process and reap it; safe to call more than once and while being cancelled."""
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
            with anyio.move_on_after(EXIT_WAIT_S):
                await self.process.aclose()
            if self.process.returncode is None:
                log.error("sandbox worker %d did not exit after SIGKILL", self.pid)
        self.stderr.close()

    def stderr_summary(self, limit: int = 16384) -> str:
        """The line that says why the worker died (Go's `fatal error:`, a signal, a Python error).

        The Go runtime follows that line with pages of goroutine dumps, so the first
        telling line is picked rather than the tail.
        """
        if self.stderr.closed:
            return ""
        try:
            self.stderr.seek(0)
            lines = self.stderr.read(limit).decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        for line in lines:
            if line.startswith(_TELLING):
                return line.strip()
        return lines[-1].strip() if lines else ""
