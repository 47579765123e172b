"""`limits.memory_mb`: held on the memory a worker actually has resident, whatever allocates it.

RLIMIT_DATA alone does not bound a worker. The Go runtime reserves address space as PROT_NONE
and later maps heap into it in place (MAP_FIXED); the kernel checks such a mapping against
RLIMIT_DATA only for the pages it adds over what it replaces, and the reservation it replaces
counts, so the Go heap grows past the limit unchecked (measured: `x = [1] * 100000000` took a
worker to 1.5 GiB under a 256 MiB RLIMIT_DATA and finished). What the worker holds is its
resident set (RSS, from /proc/<pid>/statm), and that is what is watched, from both sides:

- in the worker, a `Watchdog` thread reads its own RSS every `WORKER_INTERVAL_S` while a
  script runs and, over the limit, exits with `EXIT_MEMORY` after one line on stderr. It can
  run while Starlark runs, since starlark-go releases the GIL for a script;
- in the gateway, the run's conversation reads the worker's RSS every `PARENT_INTERVAL_S`
  (`process.Worker.guard_memory`) and kills it over the limit. That covers what the worker's
  thread cannot see (C code holding the GIL, e.g. a large conversion into Python) and does
  not depend on the worker at all.

RLIMIT_DATA and GOMEMLIMIT stay: the first turns many Python allocations past the limit into a
MemoryError (a clean `limit` error), the second makes the Go GC collect before the heap
reaches the limit, so a script whose live data fits is not killed for its garbage.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import threading
import time

WORKER_INTERVAL_S = 0.002
PARENT_INTERVAL_S = 0.005
EXIT_MEMORY = 86
"""The worker's exit status when its watchdog stops it over the memory limit."""

RETIRE_FRACTION = 0.5
"""A worker still holding more than this part of `memory_mb` after a run is replaced, so the
next script gets the whole limit rather than what the last one left resident."""

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 1 << 20
_PEAK = re.compile(r"\(peak (\d+) kB\)")


def limit_message(memory_mb: int) -> str:
    """The error of a script stopped by the memory limit."""
    return f"script exceeded the memory limit of {memory_mb} MiB (limits.memory_mb)"


def go_memory_limit_mb(memory_mb: int) -> int:
    """GOMEMLIMIT for a worker: head-room under the limit for thread stacks and Python.

    With it the Go GC collects harder near the limit instead of letting garbage push the
    heap into it (measured: a loop making 100 MB strings dies at 512 MiB without it and
    completes with it).
    """
    return max(memory_mb // 2, memory_mb - 128)


def set_data_limit(memory_mb: int) -> None:
    """Set the soft RLIMIT_DATA; the hard limit is left alone so a later run may raise it again."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = memory_mb * MIB
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


class Resident:
    """One process's resident memory, read from /proc/<pid>/statm through a descriptor kept open.

    A read costs a few microseconds. `bytes()` is None once the process is gone.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, pid: int | str = "self") -> Resident | None:
        """The reader for `pid`, or None where /proc is not available (no watch is possible)."""
        try:
            return cls(os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return None

    def bytes(self) -> int | None:
        if self._fd < 0:
            return None
        try:
            fields = os.pread(self._fd, 128, 0).split()
        except OSError:
            return None
        return int(fields[1]) * PAGE if len(fields) > 1 else None

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def kernel_peak(pid: int | str = "self") -> int | None:
    """The kernel's high-water mark of the process's resident memory (VmHWM); None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reported_peak(stderr_text: str) -> int | None:
    """The peak a worker's watchdog wrote on stderr as it stopped the worker, in bytes."""
    found = _PEAK.search(stderr_text)
    return int(found.group(1)) * 1024 if found else None


class Watchdog:
    """The worker's own watch over its RSS while a script runs (see the module's docstring)."""

    def __init__(self, interval_s: float = WORKER_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.reader = Resident.open("self")
        self.memory_mb = 0
        self._armed = threading.Event()

    def start(self) -> None:
        if self.reader is not None:
            threading.Thread(target=self._watch, name="memory-watchdog", daemon=True).start()

    def arm(self, memory_mb: int) -> None:
        """Watch from now on against `memory_mb` (the run's limit)."""
        self.memory_mb = memory_mb
        self._armed.set()

    def disarm(self) -> None:
        self._armed.clear()

    def resident(self) -> int | None:
        return self.reader.bytes() if self.reader is not None else None

    def _watch(self) -> None:
        assert self.reader is not None
        while True:
            self._armed.wait()
            size = self.reader.bytes()
            if size is not None and size > self.memory_mb * MIB:
                self._stop(size)
            time.sleep(self.interval_s)

    def _stop(self, size: int) -> None:
        """Exit at once (no cleanup: the memory is what must go), saying why on stderr."""
        peak = max(kernel_peak() or 0, size)
        line = (
            f"sandbox worker: resident memory of {size // 1024} kB (peak {peak // 1024} kB) is over "
            f"the memory limit of {self.memory_mb} MiB (limits.memory_mb)\n"
        )
        with contextlib.suppress(OSError):
            os.write(2, line.encode())
        os._exit(EXIT_MEMORY)
