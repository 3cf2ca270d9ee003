"""Running one CLI process: own process group, prompt on stdin, bounded output, a deadline, and a
guaranteed end — the whole group is killed on timeout, cancellation, client disconnect or shutdown.

Spawning uses ``start_new_session=True`` and no ``preexec_fn`` so that CPython takes its vfork path:
about 1 ms whatever the server's size, where a real fork of a large worker costs ten times that.
"""

from __future__ import annotations

import atexit
import math
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from . import leftovers
from .backends import Invocation
from .errors import ShuttingDown
from .grouprecord import GroupRecord

MAX_STDOUT_BYTES = 32 * 1024 * 1024
MAX_STDERR_BYTES = 1024 * 1024
MAX_LINE_BYTES = 10 * 1024 * 1024
TERM_GRACE_SECS = 2.0
# How long a CLI may keep its pipes open through a leftover child after it exited itself.
EXIT_DRAIN_SECS = 0.2
POLL_SECS = 1.0
MAX_POLL_MILLIS = 2**31 - 1


@dataclass
class ProcessOutcome:
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int
    timed_out: bool = False
    cancelled: str | None = None  # why clinvk ended the run early, if it did
    truncated: bool = False


class StartError(OSError):
    """The executable could not be started (missing, not executable, bad workdir)."""


class RunningProcess:
    """One spawned CLI. Use :meth:`collect` (whole output) or :meth:`lines` (streaming), then :meth:`close`."""

    def __init__(self, invocation: Invocation, env: dict[str, str], timeout: float):
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timeout = timeout
        self.timed_out = False
        self.cancelled: str | None = None
        self.truncated = False
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self.on_close: Callable[[], None] | None = None  # called once, when the process is closed
        self._exit_fd: int | None = None
        _LIVE.check_open()
        stdin_fd = _prompt_fd(invocation.stdin_text)
        self._tag = leftovers.new_tag()  # what the CLI and all it starts carry, to be found once it is over
        try:
            self.proc = subprocess.Popen(
                invocation.argv, stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=invocation.cwd, env={**env, leftovers.VARIABLE: self._tag}, start_new_session=True,
                close_fds=True,
                bufsize=0)  # unbuffered: _pump reads the fds itself; no buffer means no tty/seek probes
            self._exit_fd = _pidfd(self.proc.pid)  # one per run: _pump and _wait_exit share it
        except OSError as exc:
            raise StartError(exc.errno, f"cannot start {invocation.argv[0]}: {exc.strerror}") from exc
        finally:
            os.close(stdin_fd)
        if not _LIVE.add(self):  # the server began ending its runs while this one was starting
            self.terminate(_LIVE.closed or "server shutting down")
            self.close()
            raise ShuttingDown(f"the server is shutting down: {invocation.argv[0]} was not run")

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- reading ---------------------------------------------------------------------------------

    def collect(self) -> ProcessOutcome:
        """Wait for the process and return all of its (bounded) output."""
        stdout = bytearray()
        for chunk in self._pump(keepalive=None):
            if chunk is None:
                continue
            if len(stdout) + len(chunk) > MAX_STDOUT_BYTES:
                self.truncated = True
                self.terminate(f"output exceeded {MAX_STDOUT_BYTES} bytes")
                break
            stdout += chunk
        return self._outcome(stdout.decode("utf-8", "replace"))

    def lines(self, keepalive: float) -> Iterator[str | None]:
        """Yield stdout lines as they arrive, and ``None`` after ``keepalive`` seconds of silence."""
        buffer = bytearray()
        for chunk in self._pump(keepalive=keepalive):
            if chunk is None:
                yield None
                continue
            buffer += chunk
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                line = bytes(buffer[:end])
                del buffer[:end + 1]
                yield line.decode("utf-8", "replace")
            if len(buffer) > MAX_LINE_BYTES:
                self.truncated = True
                self.terminate(f"a stream line exceeded {MAX_LINE_BYTES} bytes")
                return
        if buffer:
            yield buffer.decode("utf-8", "replace")

    def outcome(self) -> ProcessOutcome:
        """The outcome after :meth:`lines` was exhausted."""
        return self._outcome("")

    def _outcome(self, stdout: str) -> ProcessOutcome:
        exit_code = self._reap()
        return ProcessOutcome(stdout, self._stderr.decode("utf-8", "replace"), exit_code,
                              int((time.monotonic() - self.started) * 1000), self.timed_out, self.cancelled,
                              self.truncated)

    def _pump(self, keepalive: float | None) -> Iterator[bytes | None]:
        """Read stdout and stderr without deadlock; yield stdout chunks, ``None`` on keep-alive ticks.

        Ends when both pipes are closed, or shortly after the CLI exited while a leftover child of
        it still holds them open (a pidfd in the same selector tells the moment it exits).
        """
        # poll(), not an epoll selector: for three descriptors it needs no kernel object and no
        # registration calls, which under load cost more than the wait itself.
        poller = select.poll()
        streams = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}
        for fd in streams:
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
        exit_fd = self._exit_fd
        if exit_fd is not None:
            poller.register(exit_fd, select.POLLIN)
        last_output = time.monotonic()
        exited_at: float | None = None
        while streams:
            now = time.monotonic()
            if now >= self.deadline:
                self.timed_out = True
                self.terminate(f"timed out after {self.timeout:g} s")
                return
            if exited_at is not None and now - exited_at >= EXIT_DRAIN_SECS:
                return  # the CLI is gone; what still holds its pipes is a leftover child
            wait = min(self.deadline - now, POLL_SECS)
            if exited_at is not None:
                wait = min(wait, exited_at + EXIT_DRAIN_SECS - now)
            if keepalive is not None:
                wait = min(wait, max(0.0, last_output + keepalive - now))
            events = poller.poll(_millis(wait))
            for fd, _ in events:
                if fd == exit_fd:
                    exited_at = time.monotonic()
                    poller.unregister(exit_fd)
                    continue
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    poller.unregister(fd)
                    del streams[fd]
                elif streams[fd] == "out":
                    last_output = time.monotonic()
                    yield data
                elif len(self._stderr) < MAX_STDERR_BYTES:
                    self._stderr += data[:MAX_STDERR_BYTES - len(self._stderr)]
            if self.cancelled:
                return
            now = time.monotonic()
            if keepalive is not None and now - last_output >= keepalive:
                last_output = now
                yield None
            if exited_at is None and exit_fd is None and not events and self.proc.poll() is not None:
                exited_at = now  # no pidfd support: noticed by polling instead

    # -- ending ----------------------------------------------------------------------------------

    def terminate(self, reason: str) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after a short grace. Thread-safe."""
        with self._lock:
            if self.proc.returncode is not None:
                return  # reaped (and its group killed by _reap): the number may belong to another group now
            if self.cancelled is None:
                self.cancelled = reason
        _signal_group(self.proc.pid, signal.SIGTERM)
        self._wait_exit(TERM_GRACE_SECS)
        try:
            self.proc.wait(TERM_GRACE_SECS)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.proc.pid, signal.SIGKILL)

    def _wait_exit(self, timeout: float, exit_fd: int | None = None) -> None:
        """Block until the process exits or ``timeout`` passes.

        Popen.wait(timeout) polls with sleeps of up to 50 ms (about 1 ms on a fast run, measured by
        bench/); a pidfd wakes us the moment the process exits. poll(), not select(): with hundreds
        of runs in flight descriptors pass 1024. ``exit_fd`` is the run's own pidfd, for the thread
        that owns the run (it closes it); any other thread opens one of its own.
        """
        if self.proc.poll() is not None:
            return
        fd = exit_fd if exit_fd is not None else _pidfd(self.proc.pid)
        if fd is None:
            return  # no pidfd support: Popen.wait polls instead
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            # A deadline beyond poll()'s range (the command line has none) means: until it exits.
            poller.poll(_millis(timeout) if timeout < MAX_POLL_MILLIS / 1000 else None)
        finally:
            if fd != exit_fd:
                os.close(fd)

    def _reap(self) -> int:
        try:
            self._wait_exit(self.deadline - time.monotonic(), self._exit_fd)
            code = self.proc.wait(max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.terminate(f"timed out after {self.timeout:g} s")
            code = self.proc.wait()
        # Whatever the CLI left running in its group goes with it: no orphans.
        _signal_group(self.proc.pid, signal.SIGKILL)
        return -1 if self.cancelled else code

    def close(self) -> None:
        """Idempotent cleanup: kill the group if it still runs, and what the CLI started outside it;
        close pipes, forget the process."""
        if self.proc.returncode is None:
            self.terminate(self.cancelled or "closed before it finished")
            self.proc.wait()
        if self._tag is not None:
            leftovers.end(self._tag, self.proc.pid)
            self._tag = None
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None
        if _LIVE.discard(self) and self.on_close is not None:
            self.on_close()


def _millis(secs: float) -> int:
    """A poll() timeout: whole milliseconds, rounded up so a short wait does not spin."""
    return max(0, math.ceil(secs * 1000))


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _prompt_fd(text: str) -> int:
    """A readable fd holding the prompt: any size, no writer thread, never an open pipe (CLIs wait on those)."""
    fd = os.memfd_create("clinvk-prompt", os.MFD_CLOEXEC)
    view = memoryview(text.encode("utf-8"))
    written = 0
    while written < len(view):  # pwrite leaves the offset at 0, where the CLI starts reading
        written += os.pwrite(fd, view[written:], written)
    return fd


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _LiveRuns:
    """Every process still running in this worker, so shutdown can end them all; once closed
    (:meth:`stop_all`), no new one may start. With a :class:`GroupRecord` (gunicorn workers), each
    run is also recorded on disk for the master."""

    def __init__(self) -> None:
        self._runs: dict[RunningProcess, str | None] = {}
        self._lock = threading.Lock()
        self.closed: str | None = None
        self.record: GroupRecord | None = None

    def check_open(self) -> None:
        if self.closed:
            raise ShuttingDown(f"the server is shutting down ({self.closed}): no new run starts")

    def add(self, run: RunningProcess) -> bool:
        """Track ``run``; False (not tracked) when the registry was closed meanwhile."""
        record = self.record
        entry = record.started(run.pid) if record is not None else None
        with self._lock:
            if not self.closed:
                self._runs[run] = entry
                return True
        if record is not None:
            record.ended(entry)
        return False

    def discard(self, run: RunningProcess) -> bool:
        """Forget ``run`` (its group has ended); True the first time only."""
        with self._lock:
            known = run in self._runs
            entry = self._runs.pop(run, None)
        if self.record is not None:
            self.record.ended(entry)
        return known

    def terminate_all(self, reason: str = "server shutting down") -> int:
        with self._lock:
            runs = list(self._runs)
        threads = [threading.Thread(target=run.terminate, args=(reason,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(runs)

    def stop_all(self, reason: str = "server shutting down") -> int:
        """Start no more runs and end every one still running (SIGTERM, SIGKILL after a grace)."""
        with self._lock:
            self.closed = self.closed or reason
        return self.terminate_all(reason)


_LIVE = _LiveRuns()
check_open = _LIVE.check_open  # ShuttingDown once the server has begun to stop: no new run is taken on
terminate_all = _LIVE.terminate_all
stop_all = _LIVE.stop_all
# For processes started elsewhere (the warm pool's): shutdown and a dead worker's cleanup end them too.
track = _LIVE.add
untrack = _LIVE.discard
atexit.register(terminate_all)


def stopping() -> bool:
    """Whether this process has begun ending its runs for good (server shutdown)."""
    return _LIVE.closed is not None


def record_groups(record: GroupRecord | None) -> None:
    """Record every run's process group in ``record`` from now on (a gunicorn worker, for its master)."""
    _LIVE.record = record
