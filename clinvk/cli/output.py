"""Human output of the command line: a live progress display for parallel runs, tables, durations."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, timezone
from typing import IO, Sequence

from ..orchestration import CANCELLED, COMPLETED, TaskOutcome

SPINNER = "|/-\\"
REDRAW_SECS = 0.1


def seconds(ms: int | float) -> str:
    return f"{ms / 1000:.2f}s"


def one_line(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:max(0, width - 3)] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain left-aligned table; the last column is not padded."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)).rstrip()
             for row in cells]
    return "\n".join(lines)


def ago(when: datetime, now: datetime | None = None) -> str:
    """``just now``, ``5m ago``, ``3h ago``, ``2d ago``, then the date."""
    now = now or datetime.now(timezone.utc)
    secs = (now - when).total_seconds()
    if secs < 60:
        return "just now"
    if secs < 3600:
        return f"{int(secs // 60)}m ago"
    if secs < 86400:
        return f"{int(secs // 3600)}h ago"
    if secs < 7 * 86400:
        return f"{int(secs // 86400)}d ago"
    return when.strftime("%Y-%m-%d")


def status_word(outcome: TaskOutcome) -> str:
    return {COMPLETED: "ok", CANCELLED: "cancelled"}.get(outcome.status, "FAILED")


class Progress:
    """What a parallel or compare run is doing, on stderr.

    On a terminal: one line per task, redrawn in place (waiting / running with its elapsed time /
    ok / FAILED / cancelled) plus a total line. Elsewhere: one plain line per start and end. It is a
    :data:`clinvk.orchestration.Listener` (called from the task threads).
    """

    def __init__(self, labels: Sequence[str], stream: IO[str], *, tty: bool, title: str = ""):
        self.labels = list(labels)
        self.stream = stream
        self.tty = tty
        self.title = title
        self.state: list[str] = ["waiting"] * len(self.labels)
        self.started: list[float | None] = [None] * len(self.labels)
        self.outcomes: list[TaskOutcome | None] = [None] * len(self.labels)
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = 0
        self._tick = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        rows = shutil.get_terminal_size((100, 24)).lines
        self.compact = len(self.labels) + 2 > rows  # too many tasks to show one line each
        self.width = shutil.get_terminal_size((100, 24)).columns - 1

    def __enter__(self) -> "Progress":
        if self.title:
            self._write(self.title + "\n")
        if self.tty:
            self._thread = threading.Thread(target=self._redraw_loop, name="clinvk-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            with self._lock:
                self._draw()

    def __call__(self, what: str, index: int, outcome: TaskOutcome | None) -> None:
        with self._lock:
            if what == "start":
                self.state[index] = "running"
                self.started[index] = time.monotonic()
            else:
                self.state[index] = "done"
                self.outcomes[index] = outcome
            if not self.tty:
                self._plain(what, index, outcome)

    # -- plain lines ------------------------------------------------------------------------------

    def _plain(self, what: str, index: int, outcome: TaskOutcome | None) -> None:
        head = f"[{index + 1}/{len(self.labels)}] {self.labels[index]}"
        if what == "start":
            self._write(f"{head}: running\n")
            return
        line = f"{head}: {status_word(outcome)} in {seconds(outcome.result.duration_ms)}"
        if outcome.result.error:
            line += f": {one_line(outcome.result.error, 200)}"
        self._write(line + "\n")

    # -- live display -----------------------------------------------------------------------------

    def _redraw_loop(self) -> None:
        while not self._stop.wait(REDRAW_SECS):
            with self._lock:
                self._tick += 1
                self._draw()

    def _line(self, index: int) -> str:
        label = f"[{index + 1}] {self.labels[index]}"
        state = self.state[index]
        if state == "waiting":
            return f"  . {label}  waiting"
        if state == "running":
            elapsed = time.monotonic() - (self.started[index] or self.t0)
            return f"  {SPINNER[self._tick % len(SPINNER)]} {label}  running {elapsed:.1f}s"
        outcome = self.outcomes[index]
        mark = {COMPLETED: "+", CANCELLED: "-"}.get(outcome.status, "x")
        line = f"  {mark} {label}  {status_word(outcome)} {seconds(outcome.result.duration_ms)}"
        if outcome.status != COMPLETED and outcome.result.error:
            line += f"  {outcome.result.error}"
        return line

    def _total(self) -> str:
        done = [o for o in self.outcomes if o is not None]
        ok = sum(1 for o in done if o.status == COMPLETED)
        failed = sum(1 for o in done if o.status not in (COMPLETED, CANCELLED))
        cancelled = len(done) - ok - failed
        running = self.state.count("running")
        waiting = self.state.count("waiting")
        parts = [f"{running} running", f"{ok} ok", f"{failed} failed"]
        if cancelled:
            parts.append(f"{cancelled} cancelled")
        if waiting:
            parts.append(f"{waiting} waiting")
        return f"  {', '.join(parts)} | {time.monotonic() - self.t0:.1f}s"

    def _draw(self) -> None:
        lines = [self._total()] if self.compact else [self._line(i) for i in range(len(self.labels))]
        if not self.compact:
            lines.append(self._total())
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")  # back to the first line drawn last time
        for line in lines:
            out.append("\x1b[2K" + line[:self.width] + "\n")
        self._drawn = len(lines)
        self._write("".join(out))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is not worth failing for
            pass
