"""Calls that may crash, hang or corrupt memory, made in a child process that the parent watches.

The child reports on a pipe of its own (not stdout, which the code under test may print to), one JSON
object a line (`Channel.send`):

    {"begin": i, "limit": s, ...}    before call i, which must end within s seconds
    {"end": i, ...}                  after it, with the call's result
    {"fatal": text, ...}             when it cannot go on (a file that fails to load); then it exits
    anything else                    information the caller reads (`Outcome.info`)

`watch` (the parent) starts the child, reads its reports and yields an `Outcome` per call. A child that
dies inside call i (a signal, an abort, an exit) or gives no answer within the call's limit (it is then
killed) makes call i a failed outcome that says so ("killed by SIGSEGV", "no answer in 30 s"), and a new
child starts at the call `resume` names, so one fault does not hide the calls behind it. The child runs
in a session of its own with its output in a temporary file (whose tail a failed outcome carries), and
Ctrl-C in the parent kills it at once.

Used by `python -m kernels check FILE` (kernels.playground) and the guard-page tests (tests/guard.py).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

#: The environment variable naming the child's report pipe (a file descriptor).
FD_VAR = "KERNELS_ISOLATE_FD"
#: Seconds a child may spend between calls (imports, loading a file, JIT compilation outside a call).
STARTUP_LIMIT = 300.0
TAIL = 4000  # characters of the child's output kept for a failed outcome


class Fatal(Exception):
    """The child could not go on (its {"fatal": ...} report, or a death outside any call)."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}


@dataclass
class Outcome:
    """One call: its begin report, and its end report or how the child failed inside it."""

    index: int
    begin: dict
    end: dict | None = None  # None when the child died or hung in the call
    failure: str = ""  # "killed by SIGSEGV (...)", "exited with status 1", "no answer in 30 s"
    kind: str = ""  # "" (it ended), "signal", "exit" or "time"
    signal: str = ""  # the signal's name, for kind "signal"
    output: str = ""  # the tail of the child's stdout and stderr, for a failed call


@dataclass
class Watch:
    """What `watch` learnt besides the outcomes: the child's other reports, and the restarts."""

    info: list = field(default_factory=list)
    restarts: int = 0


class Channel:
    """The child's end of the report pipe."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def from_env(cls) -> Channel:
        return cls(int(os.environ[FD_VAR]))

    def send(self, **message):
        data = (json.dumps(message, default=_plain) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]


def _plain(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def watch(command: Callable[[int], list[str]], *, env=None, cwd=None, start: int = 0,
          resume: Callable[[Outcome], int | None] | None = None, startup_limit: float = STARTUP_LIMIT,
          state: Watch | None = None) -> Iterator[Outcome]:
    """Run `command(start)` (argv of a child that reports on Channel.from_env()) and yield each call's
    Outcome. After a failed call, `resume(outcome)` gives the call to restart at (default: the next one),
    or None to stop; `state` collects the other reports. Raises Fatal when the child reports one or dies
    outside a call."""
    state = state if state is not None else Watch()
    resume = resume or (lambda o: o.index + 1)
    while start is not None:
        failed = None
        for outcome in _one_child(command(start), env, cwd, startup_limit, state):
            yield outcome
            if outcome.end is None:
                failed = outcome
        if failed is None:
            return
        start = resume(failed)
        state.restarts += start is not None


def _one_child(argv, env, cwd, startup_limit, state: Watch) -> Iterator[Outcome]:
    read_end, write_end = os.pipe()
    env = {**(env if env is not None else os.environ), FD_VAR: str(write_end)}
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, pass_fds=(write_end,), start_new_session=True)
        finally:
            os.close(write_end)
        try:
            yield from _read(proc, read_end, log, startup_limit, state)
        finally:
            os.close(read_end)
            if proc.poll() is None:  # a hang, Ctrl-C, or the caller stopped early
                _kill(proc)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _tail(log) -> str:
    log.flush()
    size = log.seek(0, os.SEEK_END)
    log.seek(max(0, size - TAIL))
    return log.read().decode(errors="replace").strip()


def _read(proc, fd, log, startup_limit, state: Watch) -> Iterator[Outcome]:
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    buffer, begun = b"", None
    deadline = time.monotonic() + startup_limit
    try:
        while True:
            timeout = deadline - time.monotonic()
            ready = sel.select(max(0.0, timeout)) if timeout > 0 else []
            if not ready:  # no answer in time
                _kill(proc)
                if begun is None:
                    raise Fatal(f"the child gave no answer in {startup_limit:.0f} s outside any call:\n{_tail(log)}")
                limit = begun.get("limit", startup_limit)
                yield Outcome(begun["begin"], begun, failure=f"no answer in {limit:g} s (killed)", kind="time",
                              output=_tail(log))
                return
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the child closed the pipe: it exited
                proc.wait()
                if begun is not None:
                    rc = proc.returncode
                    if rc < 0:
                        name = signal_name(rc)
                        yield Outcome(begun["begin"], begun, failure=f"killed by {name}", kind="signal",
                                      signal=name, output=_tail(log))
                    else:
                        yield Outcome(begun["begin"], begun, failure=f"the process exited with status {rc}",
                                      kind="exit", output=_tail(log))
                elif proc.returncode:
                    rc = proc.returncode
                    how = f"killed by {signal_name(rc)}" if rc < 0 else f"exited with status {rc}"
                    raise Fatal(f"the child {how} outside any call:\n{_tail(log)}")
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "fatal" in message:
                    proc.wait()
                    raise Fatal(message["fatal"], message)
                if "begin" in message:
                    begun = message
                    deadline = time.monotonic() + float(message.get("limit", startup_limit))
                elif "end" in message:
                    yield Outcome(message["end"], begun or {"begin": message["end"]}, end=message)
                    begun, deadline = None, time.monotonic() + startup_limit
                else:
                    state.info.append(message)
    finally:
        sel.close()
