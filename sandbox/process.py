"""One worker process as seen from the gateway: spawn, exchange frames, kill.

Workers are fresh interpreters started with `subprocess` (never a fork of the gateway),
each in its own session so terminal signals reach only the gateway. Their stderr goes to
an unnamed temporary file rather than a pipe: the Go runtime writes long traces when it
aborts, and an undrained pipe could block a dying worker; the file's tail is logged instead.
A worker gets a minimal environment (`worker_env`), never the gateway's secrets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .memory import MIB, PARENT_INTERVAL_S, Resident, kernel_peak, reported_peak
from .protocol import HEADER, MAX_FRAME, ProtocolError, pack, pack_encoded, unpack

log = logging.getLogger("sandbox")

READY_TIMEOUT_S = 20.0
_JOIN_BELOW = 1 << 16
EXIT_WAIT_S = 2.0
_TELLING = ("sandbox worker:", "fatal error:", "runtime:", "panic:", "SIG", "Traceback", "MemoryError")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_ENV_KEPT = frozenset({
    "PATH", "HOME", "TMPDIR", "TMP", "TEMP", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH",
    "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONUTF8", "PYTHONIOENCODING",
    "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX",
    "GOMAXPROCS", "GOGC", "GODEBUG", "GOTRACEBACK",
})
"""What a worker needs from the gateway's environment to start: where Python and its packages
are, the locale, and the Go runtime's settings. Anything else (API keys, tokens) stays behind."""


class SandboxError(RuntimeError):
    """The sandbox itself cannot work (a worker will not start); not the script's fault."""


def worker_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A worker's environment: the part of the gateway's it needs (`_ENV_KEPT`, `LC_*`), and this
    package importable wherever the gateway runs from."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k in _ENV_KEPT or k.startswith("LC_")}
    path = environ.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
    return env


class Worker:
    """A running worker process and its frame streams.

    Its memory is watched from here during a run (`guard_memory`, see `memory`): `peak_rss`
    is the most resident memory known of it, in bytes (what this side read, or what the
    worker's own watchdog reported as it stopped it), and `over_memory` is set when this
    side killed it over the limit.
    """

    def __init__(self, process: Process, stderr: IO[bytes]) -> None:
        self.process = process
        self.stderr = stderr
        assert process.stdout is not None and process.stdin is not None
        self._reader = BufferedByteReceiveStream(process.stdout)
        self._writer = process.stdin
        self._resident = Resident.open(process.pid)
        self.peak_rss = 0
        self.over_memory = False

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
                env=worker_env(),
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

    def resident_bytes(self) -> int | None:
        """The worker's resident memory now; None once it is gone (or without /proc)."""
        size = self._resident.bytes() if self._resident is not None else None
        if size is not None:
            self.peak_rss = max(self.peak_rss, size)
        return size

    def memory_peak(self) -> int:
        """The most resident memory the worker has held: the kernel's mark while it lives, else `peak_rss`."""
        peak = kernel_peak(self.pid) if self.alive else None
        self.peak_rss = max(self.peak_rss, peak or 0, reported_peak(self.stderr_summary()) or 0)
        return self.peak_rss

    async def guard_memory(self, memory_mb: int, interval_s: float = PARENT_INTERVAL_S) -> None:
        """Kill the worker once its resident memory is over `memory_mb`; returns then (or once it is gone).

        Meant to run beside a conversation, which then sees the worker die.
        """
        if self._resident is None:
            return
        limit = memory_mb * MIB
        while True:
            size = self.resident_bytes()
            if size is None:
                return
            if size > limit:
                self.over_memory = True
                self.memory_peak()
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                log.warning("sandbox worker %d killed: %d MiB resident, over %d MiB", self.pid, size // MIB, memory_mb)
                return
            await anyio.sleep(interval_s)

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
        if self._resident is not None:
            self._resident.close()
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
