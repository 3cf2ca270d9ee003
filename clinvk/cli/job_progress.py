"""Showing a followed job (``clinvk jobs logs -f``, ``clinvk jobs submit -f``): the answer's text on
stdout as it comes, and on stderr what the job is doing — a status line redrawn in place on a terminal
(events so far, elapsed time, the chain step or tasks running), plain lines for tools and steps elsewhere."""

from __future__ import annotations

import time
from typing import IO, Any

from .output import one_line, seconds


class JobProgress:
    def __init__(self, job_id: str, out: IO[str], err: IO[str], *, tty: bool):
        self.job_id = job_id
        self.out = out
        self.err = err
        self.tty = tty
        self.count = 0
        self.started = time.monotonic()
        self.doing = "waiting"
        self.last_seq = 0
        self._status_shown = False
        self._text_open = False  # the last thing on stdout was answer text without its newline

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "keepalive":
            self._status()
            return
        self.count += 1
        self.last_seq = event.get("seq", self.last_seq)
        content = event.get("content") or {}
        where = f"[task {event['task']}] " if "task" in event else ""
        if kind == "message" and content.get("text"):
            self._clear()
            self.out.write(content["text"] if content.get("is_partial") else content["text"] + "\n")
            self.out.flush()
            self._text_open = bool(content.get("is_partial"))
            self.doing = "answering"
        elif kind == "tool_use":
            self.doing = f"{where}tool {content.get('name', '')}"
            self._note(f"{where}tool: {content.get('name', '')} {one_line(str(content.get('input', '')), 80)}")
        elif kind == "progress" and "step" in content:
            self.doing = f"step {content['step']}: {content.get('status')}"
            result = content.get("result")
            if result is not None:
                self._note(f"step {content['step']}: {content.get('status')} in {seconds(result['duration_ms'])}"
                           + (f": {one_line(result['error'], 200)}" if result.get("error") else ""))
                if result.get("output"):
                    self._clear()
                    self.out.write(result["output"] + "\n")
        elif kind == "error":
            self._note(f"{where}error: {content.get('message', '')}")
        elif kind == "init":
            self.doing = f"{where}{event.get('backend', '')} started"
        self._status()

    def finish(self, job: dict[str, Any]) -> None:
        self._clear()
        if self._text_open:
            self.out.write("\n")
        duration = f" in {seconds(job['duration_ms'])}" if job.get("duration_ms") is not None else ""
        line = f"job {job['id'][:8]}: {job['status']}{duration}"
        if job.get("error"):
            line += f": {one_line(job['error'], 200)}"
        self.err.write(line + "\n")
        self.err.flush()

    def _note(self, text: str) -> None:
        self._clear()
        if self._text_open:
            self.out.write("\n")
            self.out.flush()
            self._text_open = False
        self.err.write(text + "\n")
        self.err.flush()

    def _status(self) -> None:
        if not self.tty or self._text_open:  # never draw over a line of answer text
            return
        elapsed = int(time.monotonic() - self.started)
        self.err.write(f"\r\x1b[2Kjob {self.job_id[:8]}: {self.doing} · {self.count} events · {elapsed}s")
        self.err.flush()
        self._status_shown = True

    def _clear(self) -> None:
        if self._status_shown:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._status_shown = False
