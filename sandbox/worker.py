"""Worker process entry point: `python -m sandbox.worker [--memory-mb N]`.

The gateway keeps a few of these warm and talks to each over its stdin/stdout with the
frames in `protocol`. A worker runs one script at a time and is disposable: the gateway
kills it on timeout and replaces it when it dies, so the Go runtime aborting on the memory
limit, or the worker's memory watchdog stopping it (`memory`), costs one worker, never the gateway.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from .limits import Limits
from .memory import MIB, RETIRE_FRACTION, Watchdog, go_memory_limit_mb, limit_message, set_data_limit
from .protocol import read_frame, write_frame
from .values import BoundaryError, encode_json

if TYPE_CHECKING:
    from .session import Session

GO_THREADS = "2"
"""GOMAXPROCS: scripts are single-threaded; fewer Go threads means less stack counted by RLIMIT_DATA."""
SPARE_AFTER_S = 0.001
"""How long the gateway is to send nothing after a run before the next run's session is made
(`prepare_spare`). Made at once, it would take a CPU from the gateway finishing the run's answer:
the `done` frame wakes the gateway, often on this worker's CPU."""


class Pipe:
    """The frame channel to the gateway; exits the process if the gateway has gone."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, message: dict[str, Any]) -> None:
        try:
            write_frame(self.writer, message)
        except (BrokenPipeError, OSError):
            os._exit(0)

    def receive(self) -> dict[str, Any]:
        message = read_frame(self.reader)
        if message is None:
            os._exit(0)
        return message

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.receive()


def run(frame: dict[str, Any], pipe: Pipe, watchdog: Watchdog, spare: Session | None = None) -> dict[str, Any]:
    """Execute one `run` frame under its memory limit and build the `done` frame.

    `retire` in it asks the gateway to replace this worker: after a MemoryError, or when
    the worker still holds much of the limit, which the next script would otherwise lack.
    `spare` (from `prepare_spare`) runs the script if it was made for the same limits.
    """
    limits = Limits.from_dict(frame.get("limits") or {})
    set_data_limit(limits.memory_mb)
    watchdog.arm(limits.memory_mb)
    try:
        done = _execute(frame, pipe, limits, spare)
    except MemoryError:  # outside the session: sizing the result, joining the output
        done = None
    finally:
        watchdog.disarm()
    if done is None:
        done = memory_done(limits.memory_mb)
    resident = watchdog.resident() or 0
    done["retire"] = bool(done.get("retire")) or resident > RETIRE_FRACTION * limits.memory_mb * MIB
    return done


def memory_done(memory_mb: int, tool_calls: int = 0) -> dict[str, Any]:
    """The `done` frame of a run stopped by a MemoryError."""
    error = {"kind": "limit", "message": limit_message(memory_mb)}
    return {"op": "done", "output": "", "value": None, "error": error, "tool_calls": tool_calls, "retire": True}


def prepare_spare(pipe: Pipe, frame: dict[str, Any], after_s: float = SPARE_AFTER_S) -> Session | None:
    """A session for the next run, made while the worker waits for it: its interpreter built and the
    prelude run (about 0.3 ms of every run's time otherwise), once nothing came for `after_s`.
    Made for the limits of `frame`, the run just done; a new one for every run, so no script sees
    another's interpreter. None if the next run came first or it cannot be made: the run then
    makes its own, and reports what goes wrong.
    """
    from .session import Session  # imported late: starlark_go must load after the Go settings

    arrived, _, _ = select.select([pipe.reader], [], [], after_s)
    if arrived:
        return None
    session = Session(pipe.request, Limits.from_dict(frame.get("limits") or {}))
    try:
        session.prepare()
    except Exception:  # MemoryError included
        return None
    return session


def _execute(frame: dict[str, Any], pipe: Pipe, limits: Limits, spare: Session | None) -> dict[str, Any]:
    from .session import Session  # imported late: starlark_go must load after the Go settings

    servers = [s for s in frame.get("servers") or [] if isinstance(s, str)]
    session = spare if spare is not None and spare.limits == limits else Session(pipe.request, limits)
    value, error = session.execute(str(frame.get("code", "")), servers)
    if error is None and value is not None:
        value, error = _bounded(value, limits)
    return {
        "op": "done",
        "output": session.output.text(),
        "output_truncated_bytes": session.output.dropped,
        "value": value,
        "error": error,
        "tool_calls": session.tool_calls,
        "retire": session.out_of_memory,
    }


def _bounded(value: Any, limits: Limits) -> tuple[Any, dict[str, Any] | None]:
    """`value` if its JSON fits `max_result_bytes`, else an error naming the limit."""
    try:
        size = len(encode_json(value))
    except BoundaryError as exc:
        return None, {"kind": "runtime", "message": f"result: {exc}"}
    if size <= limits.max_result_bytes:
        return value, None
    message = (
        f"result is {size} bytes as JSON, over the limit of {limits.max_result_bytes} bytes "
        "(limits.max_result_bytes); return less, or print a summary"
    )
    return None, {"kind": "limit", "message": message}


def _exit_with_parent(interval_s: float = 1.0) -> None:
    """Exit once the gateway is gone, even mid-script.

    A script in a busy loop never reads stdin, so it would not see the pipe close; this
    thread can run because starlark-go releases the GIL while a script runs.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _claim_stdout() -> BinaryIO:
    """A private copy of stdout for frames; fd 1 then points at stderr so stray writes cannot corrupt them."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb")


def _memory_from_argv(argv: list[str]) -> int:
    if "--memory-mb" in argv:
        return int(argv[argv.index("--memory-mb") + 1])
    return Limits().memory_mb


def main(argv: list[str] | None = None) -> int:
    """Serve `run` frames until stdin closes."""
    memory_mb = _memory_from_argv(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GOMAXPROCS", GO_THREADS)
    os.environ["GOMEMLIMIT"] = f"{go_memory_limit_mb(memory_mb)}MiB"
    set_data_limit(memory_mb)
    import starlark_go

    starlark_go.configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)
    _exit_with_parent()
    watchdog = Watchdog()
    watchdog.start()
    pipe = Pipe(sys.stdin.buffer, _claim_stdout())
    return _off_the_main_thread(lambda: _serve(pipe, watchdog))


def _off_the_main_thread(serve: Callable[[], int]) -> int:
    """Run `serve` on a thread of its own; its exit status.

    Each call from Python into starlark-go (a new interpreter, `exec`, `eval`, a tool call
    returning) makes the Go runtime look up the calling thread's stack bounds. For the
    main thread glibc finds them by reading /proc/self/maps, about 80 µs a call (measured;
    a one-call script makes a dozen such calls); for any other thread it is a few µs.
    """
    status: list[int] = []

    def run() -> None:
        try:
            status.append(serve())
        except BaseException:
            traceback.print_exc()
            status.append(1)

    thread = threading.Thread(target=run, name="scripts", daemon=True)
    thread.start()
    thread.join()
    return status[0] if status else 1


def _serve(pipe: Pipe, watchdog: Watchdog) -> int:
    """The frame loop: `ready`, then per `run` frame a `started`, any `call`s, and a `done`.

    After each `done` the next run's session is prepared (`prepare_spare`), unless the gateway
    is to retire this worker.
    """
    pipe.send({"op": "ready", "pid": os.getpid()})
    spare: Session | None = None
    while True:
        frame = read_frame(pipe.reader)
        if frame is None:
            return 0
        if frame.get("op") != "run":
            print(f"sandbox worker: unexpected frame {frame.get('op')!r}", file=sys.stderr)
            return 2
        pipe.send({"op": "started"})  # lets the gateway tell "died before running" from "died running"
        done = run(frame, pipe, watchdog, spare)
        spare = None  # a session runs one script
        try:
            pipe.send(done)
        except BoundaryError as exc:
            error = {"kind": "runtime", "message": f"the run's outcome could not be sent: {exc}"}
            pipe.send({"op": "done", "output": "", "value": None, "error": error, "tool_calls": 0})
        except MemoryError:
            memory_mb = Limits.from_dict(frame.get("limits") or {}).memory_mb
            pipe.send(memory_done(memory_mb, done.get("tool_calls", 0)))
            continue
        if not done.get("retire"):
            spare = prepare_spare(pipe, frame)


if __name__ == "__main__":
    sys.exit(main())
