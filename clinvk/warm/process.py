"""One warm CLI process: started ahead in its long-lived mode, then serving exactly one run.

While idle it only speaks its protocol's handshake. :meth:`WarmProcess.begin` hands it a run; from
then on it offers the interface of :class:`clinvk.runner.RunningProcess` (``collect``, ``lines``,
``outcome``, ``terminate``, ``close``), fed with one-shot-format lines by its :class:`Protocol`. The
answer is complete at the result line: the run ends there, and the process is told to exit (stdin
closed) and reaped in the background, its whole process group killed after a short grace.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

from .. import leftovers, runner
from ..runner import MAX_STDERR_BYTES, MAX_STDOUT_BYTES, ProcessOutcome, StartError
from .protocol import Protocol, Step

if TYPE_CHECKING:
    from ..backends import Invocation

# After the result line the CLI exits by itself within ~0.1-0.4 s (measured); its group is killed after this.
EXIT_GRACE_SECS = 5.0
_DONE, _EOF, _WAKE = object(), object(), object()


class WarmProcess:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None, protocol: Protocol):
        self.protocol = protocol
        self.spawned = time.monotonic()
        self.started = self.spawned  # of the run, once begun
        self.deadline = float("inf")
        self.timeout = 0.0
        self.timed_out = False
        self.cancelled: str | None = None
        self.truncated = False
        self.on_close: Callable[[], None] | None = None
        self.launched: Invocation | None = None  # the isolated launch it runs as (set by its recipe)
        self.rss_bytes = 0  # measured by the pool while idle
        self._running = False
        self._finished = False  # the result line came
        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self._tag = leftovers.new_tag()  # what the CLI and all it starts carry, to be found once it is over
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=cwd, env={**env, leftovers.VARIABLE: self._tag},
                                         start_new_session=True, close_fds=True)
        except OSError as exc:
            raise StartError(exc.errno, f"cannot start {argv[0]}: {exc.strerror}") from exc
        if not runner.track(self):  # the server is shutting down: no new process
            _kill_group(self.proc.pid)
            self.proc.wait()
            raise StartError(0, f"cannot start {argv[0]}: the server is shutting down")
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True, name="warm-stderr")
        self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, daemon=True, name="warm-stdout").start()
        self._send(protocol.opening())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def usable(self) -> bool:
        """Still running, its handshake not failed, never handed a run."""
        return (self.proc.poll() is None and not self._closed and not self._running
                and self.protocol.failure is None)

    # -- the process's pipes -----------------------------------------------------------------------

    def _send(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self.proc.stdin.write("".join(line + "\n" for line in lines).encode("utf-8"))
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the process is gone: its reader reports the end

    def _apply(self, step: Step) -> None:
        """Called with the lock held."""
        self._send(step.send)
        for line in step.output:
            self._queue.put(line)
        if step.done and not self._finished:
            self._finished = True
            self._queue.put(_DONE)

    def _read_stdout(self) -> None:
        size = 0
        for raw in self.proc.stdout:
            size += len(raw)
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                message = json.loads(line)
            except ValueError:
                continue  # noise on stdout is not part of any answer
            if not isinstance(message, dict):
                continue
            with self._lock:
                self._apply(self.protocol.receive(message, line, self._running))
            if size > MAX_STDOUT_BYTES and self._running:
                self.truncated = True
                self.terminate(f"output exceeded {MAX_STDOUT_BYTES} bytes")
                break
        self.proc.stdout.close()
        self._queue.put(_EOF)

    def _read_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            if len(self._stderr) < MAX_STDERR_BYTES:
                self._stderr += chunk[:MAX_STDERR_BYTES - len(self._stderr)]
        self.proc.stderr.close()

    # -- the run -----------------------------------------------------------------------------------

    def begin(self, prompt: str, timeout: float) -> None:
        """Give this process its one run."""
        self.started = time.monotonic()
        self.timeout, self.deadline = timeout, self.started + timeout
        with self._lock:
            self._running = True
            self._apply(self.protocol.start(prompt))

    def _items(self, keepalive: float | None) -> Iterator[str | None]:
        """Output lines until the result line or the process's end; ``None`` on keep-alive ticks."""
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                self.timed_out = True
                self.terminate(f"timed out after {self.timeout:g} s")
                return
            wait = min(self.deadline - now, keepalive if keepalive is not None else 1.0)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                if keepalive is not None:
                    yield None
                continue
            if item is _DONE or item is _EOF or self.cancelled:
                return
            if item is not _WAKE:
                yield item

    def collect(self) -> ProcessOutcome:
        return self._outcome("".join(line + "\n" for line in self._items(None) if line is not None))

    def lines(self, keepalive: float) -> Iterator[str | None]:
        yield from self._items(keepalive)

    def outcome(self) -> ProcessOutcome:
        return self._outcome("")

    def _outcome(self, stdout: str) -> ProcessOutcome:
        if self.cancelled:
            code = -1
        elif self._finished:
            code = 0  # the answer is complete; the exit that follows is not waited for
        else:  # the process ended before its answer: its status and stderr tell why
            try:
                code = self.proc.wait(max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.timed_out = True
                self.terminate(f"timed out after {self.timeout:g} s")
                code = -1
            self._stderr_reader.join(1.0)
        return ProcessOutcome(stdout, self._stderr.decode("utf-8", "replace"), code,
                              int((time.monotonic() - self.started) * 1000), self.timed_out, self.cancelled,
                              self.truncated)

    # -- ending ------------------------------------------------------------------------------------

    def terminate(self, reason: str) -> None:
        """End the whole process group now (thread-safe); the run sees ``reason``."""
        with self._lock:
            if self.cancelled is None and not self._finished:
                self.cancelled = reason
        _kill_group(self.proc.pid)
        self._queue.put(_WAKE)

    def close(self) -> None:
        """Idempotent: end stdin and reap in the background; the group is killed after a grace."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        threading.Thread(target=self._reap, daemon=True, name="warm-reap").start()

    def _reap(self) -> None:
        try:
            self.proc.wait(EXIT_GRACE_SECS)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(self.proc.pid)  # codex's node launcher would orphan its native child otherwise
        self.proc.wait()
        leftovers.end(self._tag, self.proc.pid)
        runner.untrack(self)
        if self.on_close is not None:
            self.on_close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
