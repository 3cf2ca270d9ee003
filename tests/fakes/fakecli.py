"""Shared machinery of the fake ``claude``, ``codex`` and ``gemini`` CLIs (see README.md here).

Stdlib only. The three scripts next to this file put this directory on ``sys.path`` and import it.
The fakes are spawned thousands of times per test run, so only cheap modules are imported and no
fixture file is read at runtime (help texts in ``data/`` are read only when a help or usage error
is printed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

START = time.monotonic()
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

_TRUE = ("1", "true", "yes", "on")
_PUNCT = ".,;:!?)]}\"'`"


# --------------------------------------------------------------------------- ids, time, JSON


def uuid4() -> str:
    """A random RFC 4122 version-4 UUID (what claude and gemini use for session ids)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7() -> str:
    """A version-7 UUID: 48-bit Unix milliseconds then random bits (codex thread ids)."""
    b = bytearray(int(time.time() * 1000).to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hexid(n: int) -> str:
    return os.urandom((n + 1) // 2).hex()[:n]


def is_uuid(value: str) -> bool:
    parts = value.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12]:
        return False
    try:
        int("".join(parts), 16)
    except ValueError:
        return False
    return True


def iso_now(ts: float | None = None) -> str:
    """``2026-11-22T15:22:15.742Z`` (JavaScript ``Date.toISOString()``)."""
    ts = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def elapsed_ms() -> int:
    return int((time.monotonic() - START) * 1000)


def dumps(obj) -> str:
    """Compact JSON the way JavaScript's ``JSON.stringify`` and Rust's serde_json write it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- output


_OUT = sys.stdout.buffer if sys.stdout is not None else None


def write(text: str) -> None:
    """Write to stdout and flush at once, so a reader sees every event as soon as it is made."""
    _OUT.write(text.encode("utf-8"))
    _OUT.flush()


def line(text: str) -> None:
    write(text + "\n")


def emit(obj) -> None:
    """One NDJSON/JSONL event line."""
    write(dumps(obj) + "\n")


def err(text: str) -> None:
    if sys.stderr is None:
        return
    sys.stderr.buffer.write(text.encode("utf-8"))
    sys.stderr.flush()


def read_data(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8") as fh:
        return fh.read()


# --------------------------------------------------------------------------- process set-up


def setup_signals() -> None:
    """Die quietly like a native CLI: SIGPIPE and SIGINT kill the process, no Python traceback."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def read_stdin_bytes() -> bytes | None:
    """All of stdin, or None when stdin is a terminal or closed (nothing piped)."""
    if sys.stdin is None or stdin_is_tty():
        return None
    try:
        return sys.stdin.buffer.read()
    except (OSError, ValueError):
        return None


def decode(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", "replace")


def spawn_grandchild() -> int:
    """Start ``sleep 1000`` in our process group (inheriting stdout/stderr, like a CLI's helper)."""
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)
    return os.posix_spawnp("sleep", ["sleep", "1000"], os.environ, setsigdef=sigs)


def spawn_detached() -> int:
    """Start ``sleep 1000`` as an agent's tool does with ``setsid sh -c 'cmd >/dev/null 2>&1 &'``: in
    a session of its own (outside our process group), holding none of our pipes, and orphaned at
    once (the shell that started it exits)."""
    shell = subprocess.run(["sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"],
                           stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True, check=True)
    return int(shell.stdout)


def hang_forever() -> None:
    while True:
        time.sleep(3600)


def sleep(seconds: float) -> None:
    if seconds and seconds > 0:
        time.sleep(seconds)


def relaunch_like_gemini() -> None:
    """Emulate gemini's relaunch: a parent that ignores SIGTERM/SIGINT/SIGHUP waits for a child
    that does the work. Returns in the child; the parent exits with the child's status."""
    pid = os.fork()
    if pid == 0:
        os.environ["FAKE_RELAUNCH_PARENT_PID"] = str(os.getppid())
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


# --------------------------------------------------------------------------- behaviour knobs


class UsageError(Exception):
    """A knob has a value that cannot be used (reported as a fake-level crash, exit 3)."""


def prompt_words(prompt: str) -> dict[str, str]:
    """``FAKE_NAME[=value]`` tokens in the prompt. A bare word means ``1``."""
    words: dict[str, str] = {}
    if "FAKE_" not in prompt:
        return words
    for tok in prompt.split():
        start = tok.find("FAKE_")
        if start < 0:
            continue
        name, eq, value = tok[start:].partition("=")
        words[name.rstrip(_PUNCT)] = value.rstrip(_PUNCT) if eq else "1"
    return words


class Knobs:
    """Per-invocation behaviour, from prompt words first, then ``FAKE_<BACKEND>_<NAME>``, then
    ``FAKE_CLI_<NAME>`` (then a few legacy plain ``FAKE_<NAME>`` env names)."""

    def __init__(self, backend: str, prompt: str):
        self.backend = backend
        self.words = prompt_words(prompt)
        self.reply_override = self._env("REPLY")
        self.delay = self._float("DELAY", "FAKE_DELAY")
        self.chunks = self._int("CHUNKS", "FAKE_CHUNKS")
        self.chunk_delay = self._float("CHUNK_DELAY", "FAKE_CHUNK_DELAY")
        fail = self._get("FAIL", "FAKE_FAIL")
        self.fail = fail.lower() if fail and fail not in ("0", "none") else None
        if self.fail not in (None, "401", "429", "500", "crash"):
            raise UsageError(f"unknown FAKE_FAIL kind {fail!r} (use 401, 429, 500 or crash)")
        self.hang = self._bool("HANG", "FAKE_HANG")
        self.ignore_term = self._bool("IGNORE_TERM", "FAKE_IGNORE_TERM", plain=True)
        self.spawn_child = self._bool("SPAWN_CHILD", "FAKE_SPAWN_CHILD", plain=True)
        self.spawn_detached = self._bool("SPAWN_DETACHED", "FAKE_SPAWN_DETACHED")
        self.big = self._int("BIG_OUTPUT", "FAKE_BIG")
        self.tool = self._bool("TOOL", "FAKE_TOOL")

    def _env(self, name: str, plain: bool = False) -> str | None:
        keys = [f"FAKE_{self.backend.upper()}_{name}", f"FAKE_CLI_{name}"]
        if plain:
            keys.append(f"FAKE_{name}")
        for key in keys:
            value = os.environ.get(key)
            if value:
                return value
        return None

    def _get(self, name: str, word: str, plain: bool = False) -> str | None:
        if word in self.words:
            return self.words[word]
        return self._env(name, plain)

    def _bool(self, name: str, word: str, plain: bool = False) -> bool:
        value = self._get(name, word, plain)
        return value is not None and value.lower() in _TRUE

    def _float(self, name: str, word: str) -> float:
        value = self._get(name, word)
        if value is None:
            return 0.0
        try:
            return max(0.0, float(value))
        except ValueError:
            raise UsageError(f"{word}={value!r} is not a number of seconds") from None

    def _int(self, name: str, word: str) -> int | None:
        value = self._get(name, word)
        if value is None:
            return None
        try:
            return max(0, int(value))
        except ValueError:
            raise UsageError(f"{word}={value!r} is not an integer") from None

    def reply(self, prompt: str) -> str:
        if self.big is not None:
            return big_text(self.big)
        if self.reply_override is not None:
            return self.reply_override
        return "echo: " + prompt

    def pieces(self, text: str, default: int) -> list[str]:
        return split_chunks(text, default if self.chunks is None else self.chunks)


def big_text(size: int) -> str:
    pattern = "fake-big-output 0123456789 abcdefghijklmnopqrstuvwxyz "
    return (pattern * (size // len(pattern) + 1))[:size]


def split_chunks(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` (at most ``len(text)``, at least 1) near-equal non-empty pieces."""
    n = max(1, min(n, len(text)))
    q, r = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        size = q + (1 if i < r else 0)
        out.append(text[pos:pos + size])
        pos += size
    return out


def input_tokens(prompt: str, turn: int) -> int:
    """Deterministic usage: 10 per user turn of the session so far plus one per 4 prompt chars."""
    return 10 * turn + len(prompt) // 4


def output_tokens(reply: str) -> int:
    return len(reply) // 4


# --------------------------------------------------------------------------- sessions


class Store:
    """Sessions as ``$FAKE_CLI_HOME/<backend>/<id>.json`` (default ``$HOME/.fake-clis``)."""

    def __init__(self, backend: str):
        root = os.environ.get("FAKE_CLI_HOME") or os.path.join(os.path.expanduser("~"), ".fake-clis")
        self.dir = os.path.join(root, backend)
        self.backend = backend

    def path(self, sid: str) -> str:
        return os.path.join(self.dir, sid + ".json")

    def load(self, sid: str | None) -> dict | None:
        if not sid or "/" in sid or sid.startswith(".") or "\0" in sid:
            return None
        try:
            with open(self.path(sid), "rb") as fh:
                return json.loads(fh.read())
        except (OSError, ValueError):
            return None

    def new(self, sid: str, model: str | None, **extra) -> dict:
        now = time.time()
        sess = {"id": sid, "backend": self.backend, "cwd": os.getcwd(), "model": model,
                "created": now, "updated": now, "turns": []}
        sess.update(extra)
        return sess

    def save(self, sess: dict) -> None:
        os.makedirs(self.dir, exist_ok=True)
        sess["updated"] = time.time()
        path = self.path(sess["id"])
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(dumps(sess))
        os.replace(tmp, path)

    def all(self) -> list[dict]:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        out = []
        for name in names:
            if name.endswith(".json"):
                sess = self.load(name[:-5])
                if sess:
                    out.append(sess)
        out.sort(key=lambda s: (s.get("created", 0), s["id"]))
        return out

    def delete(self, sid: str) -> bool:
        try:
            os.unlink(self.path(sid))
            return True
        except OSError:
            return False


def start_turn(sess: dict, prompt: str) -> dict:
    turn = {"prompt": prompt, "reply": None, "status": "running", "started": time.time(),
            "input_tokens": 0, "output_tokens": 0}
    sess["turns"].append(turn)
    return turn


def finish_turn(turn: dict, reply: str | None, status: str, tokens_in: int = 0, tokens_out: int = 0) -> None:
    turn.update(reply=reply, status=status, input_tokens=tokens_in, output_tokens=tokens_out)


# --------------------------------------------------------------------------- invocation log

_logged = False


def log_invocation(backend: str, prompt: str | None, **extra) -> None:
    """Append one JSON line per invocation to ``$FAKE_CLI_LOG`` (if set). Idempotent per process."""
    global _logged
    if _logged:
        return
    _logged = True
    path = os.environ.get("FAKE_CLI_LOG")
    if not path:
        return
    rec = {
        "backend": backend,
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "prompt": prompt,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "child_pid": None,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("FAKE_", "CLINVK_TEST_"))},
        "env_names": sorted(os.environ),  # what clinvk let through to the CLI (tests check the allowlist)
        "time": time.time(),
    }
    rec.update(extra)
    data = (dumps(rec) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def die(backend: str, message: str, code: int, prompt: str | None = None) -> None:
    """Print ``message`` (verbatim, caller adds newlines) on stderr, log, and exit ``code``."""
    log_invocation(backend, prompt, exit_code=code, error=message)
    err(message)
    sys.exit(code)


def crash(backend: str) -> None:
    """``FAKE_FAIL=crash``: one line on stderr, exit 3."""
    err(f"fake {backend}: simulated crash (FAKE_FAIL=crash)\n")
    sys.exit(3)


def prepare(backend: str, knobs: Knobs, prompt: str, **extra) -> None:
    """Apply the process-level knobs, then log the invocation."""
    child = spawn_grandchild() if knobs.spawn_child else None
    if knobs.spawn_detached:
        extra["detached_pid"] = spawn_detached()
    if knobs.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "FAKE_RELAUNCH_PARENT_PID" in os.environ:
        extra["relaunch_parent_pid"] = int(os.environ["FAKE_RELAUNCH_PARENT_PID"])
    log_invocation(backend, prompt, child_pid=child, **extra)


def make_knobs(backend: str, prompt: str) -> Knobs:
    try:
        return Knobs(backend, prompt)
    except UsageError as exc:
        die(backend, f"fake {backend}: {exc}\n", 3, prompt)
        raise  # unreachable
