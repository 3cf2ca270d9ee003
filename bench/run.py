#!/usr/bin/env python3
"""clinvk benchmark: the server's cost over running the CLI directly, streaming delay, concurrency,
memory per in-flight run and session-store speed — measured side by side in one run.

    python bench/run.py            # full run (under 3 minutes on 2 cores)
    python bench/run.py --quick    # small counts, well under a minute (CI smoke test)

It builds a fake claude/codex/gemini in C (bench/fakecli.c, outputs taken from tests/fixtures/),
starts `clinvk serve` on 127.0.0.1 with a temporary CLINVK_HOME and a config pointing the backends at
the fake, and compares each HTTP path with spawning the same fake directly from Python
(``subprocess.run`` with the prompt on stdin, ``start_new_session=True``). It prints a table with
the DESIGN.md targets beside the figures and writes the figures as JSON (default
``bench/results/<timestamp>.json``).

Every load loop is bounded in count and in time and stops by itself; only 127.0.0.1 is contacted.
The exit status is non-zero only when the harness itself failed (a scenario produced no figures):
timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from clinvk.backends import BACKENDS  # noqa: E402
from clinvk.backends.base import RunSpec  # noqa: E402
from clinvk.sessions import SqliteSessionStore as SessionStore  # noqa: E402
from tests.server_process import ServerProcess, free_port  # noqa: E402,F401  (the suite's server harness; free_port for peers.py)

HOST = "127.0.0.1"
PROMPT = "Say hello in one short sentence."
REPLY = "Hello from stub"
STAMP = re.compile(rb"T(\d{6,});")


@dataclass
class Plan:
    """How much of everything one run does."""

    latency_samples: int  # per variant, at concurrency 1
    latency_warmup: int
    throughput_clients: tuple[int, ...]
    throughput_secs: float  # per (mode, clients) cell
    throughput_max_per_client: int
    stream_runs: int  # per style
    stream_events: int  # per run
    stream_gap_us: int
    hold_runs: int
    sessions: int
    session_repeats: int  # per query


FULL = Plan(latency_samples=300, latency_warmup=20, throughput_clients=(1, 16, 64), throughput_secs=3.0,
            throughput_max_per_client=20_000, stream_runs=10, stream_events=50, stream_gap_us=5_000,
            hold_runs=200, sessions=10_000, session_repeats=40)
QUICK = Plan(latency_samples=15, latency_warmup=3, throughput_clients=(1, 16, 64), throughput_secs=0.5,
             throughput_max_per_client=2_000, stream_runs=2, stream_events=10, stream_gap_us=2_000,
             hold_runs=20, sessions=1_000, session_repeats=5)

# DESIGN.md, "Performance targets".
TARGETS = {
    "added_p50_ms": 1.0,
    "added_p99_ms": 3.0,
    "throughput_ratio_16": 0.8,
    "stream_p99_ms": 2.0,
    "hold_runs": 200,
    "hold_kib_per_run": 1024.0,
    "sessions_ms": 20.0,
}


# ------------------------------------------------------------------------------------------- helpers

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def summary_ms(samples_ns: list[int]) -> dict[str, float]:
    ms = [s / 1e6 for s in samples_ns]
    if not ms:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan"),
                "max_ms": float("nan")}
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3),
            "mean_ms": round(sum(ms) / len(ms), 3), "max_ms": round(max(ms), 3)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def proc_children() -> dict[int, list[int]]:
    """ppid -> [pid] for every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float, float]:
    """(user, system, reaped children) CPU seconds of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, (int(fields[13]) + int(fields[14])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds spent busy by the whole machine since boot (all CPUs)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU used between start() and stop(): by the server under test, by this harness (and the fakes it
    spawned), and by everything else on the machine (other people's jobs make the figures noisy)."""

    def __init__(self, servers: list["Server"]):
        self.servers = servers

    def _sample(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        user = system = children = 0.0
        for server in self.servers:
            for pid in server.pids():
                u, s_, c = proc_cpu(pid)
                user, system, children = user + u, system + s_, children + c
        return {"wall": time.monotonic(), "busy": machine_busy(), "server_user": user, "server_sys": system,
                "server_children": children, "harness": own.ru_utime + own.ru_stime,
                "harness_children": kids.ru_utime + kids.ru_stime}

    def start(self) -> "CpuMeter":
        self.before = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        after = self._sample()
        d = {k: after[k] - self.before[k] for k in after}
        ours = (d["server_user"] + d["server_sys"] + d["server_children"] + d["harness"] + d["harness_children"])
        wall = max(d["wall"], 1e-9)
        return {"secs": round(wall, 3), "server_user_s": round(d["server_user"], 3),
                "server_sys_s": round(d["server_sys"], 3), "server_cli_s": round(d["server_children"], 3),
                "harness_s": round(d["harness"] + d["harness_children"], 3),
                "other_load_cores": round(max(0.0, d["busy"] - ours) / wall, 2)}


# ------------------------------------------------------------------------------------------- the fake

def c_literal(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _fill(line: str, old: str, new: str) -> str:
    if old not in line:
        raise RuntimeError(f"fixture line changed, cannot find {old!r} in {line[:120]!r}")
    return line.replace(old, new)


def fixture_templates() -> dict[str, str]:
    """The fake's output templates, made from the real captured outputs; \\001 marks the text."""
    fixtures = REPO / "tests" / "fixtures"
    lines = lambda path: (fixtures / path).read_text().splitlines(keepends=True)  # noqa: E731
    text = "\001"
    claude = lines("claude/stream-json-partial.stdout")
    codex = lines("codex/exec-json.stdout")
    gemini = lines("gemini/stream-json.stdout")
    return {
        "CLAUDE_JSON": _fill((fixtures / "claude/print-json.stdout").read_text(),
                             f'"result":"{REPLY}"', f'"result":"{text}"'),
        "CLAUDE_STREAM_HEAD": "".join(claude[0:4]),  # init, status, message_start, content_block_start
        "CLAUDE_STREAM_DELTA": _fill(claude[4], '"text":"Hello f"', f'"text":"{text}"'),
        "CLAUDE_STREAM_TAIL": "".join([_fill(claude[6], f'"text":"{REPLY}"', f'"text":"{text}"'), *claude[7:10],
                                       _fill(claude[10], f'"result":"{REPLY}"', f'"result":"{text}"')]),
        "CODEX_HEAD": codex[0] + codex[2],  # thread.started, turn.started
        "CODEX_DELTA": _fill(codex[3], f'"text":"{REPLY}"', f'"text":"{text}"'),
        "CODEX_TAIL": codex[4],
        "GEMINI_JSON": _fill((fixtures / "gemini/json.stdout").read_text(),
                             f'"response": "{REPLY}"', f'"response": "{text}"'),
        "GEMINI_STREAM_HEAD": gemini[0] + gemini[1],
        "GEMINI_STREAM_DELTA": _fill(gemini[2], '"content":"Hello f"', f'"content":"{text}"'),
        "GEMINI_STREAM_TAIL": gemini[4],
    }


def build_fake(into: Path) -> dict[str, Path]:
    """Compile bench/fakecli.c (static if the toolchain can) and link it as claude, codex, gemini."""
    into.mkdir(parents=True, exist_ok=True)
    header = "".join(f"static const char {name}[] = {c_literal(value)};\n"
                     for name, value in fixture_templates().items())
    (into / "fixtures.h").write_text(header)
    binary = into / "fakecli"
    base = [os.environ.get("CC", "cc"), "-O2", "-Wall", "-I", str(into), "-o", str(binary), str(BENCH / "fakecli.c")]
    static = subprocess.run(base + ["-static"], capture_output=True, text=True)
    if static.returncode != 0:
        dynamic = subprocess.run(base, capture_output=True, text=True)
        if dynamic.returncode != 0:
            raise RuntimeError(f"cannot compile the fake CLI:\n{dynamic.stderr}")
    fakes = {}
    for name in BACKENDS:
        path = into / name
        os.link(binary, path)
        fakes[name] = path
    return fakes


SH_FAKE = """#!/bin/sh
# The kind of shell fake DESIGN.md's targets were measured with: reads the prompt, prints claude's
# real json result.
cat > /dev/null
printf '%s\\n' '{result}'
"""


def build_sh_fake(into: Path) -> dict[str, Path]:
    """A /bin/sh claude (json output only) that, like DESIGN.md's reference fake, takes about a millisecond."""
    into.mkdir(parents=True, exist_ok=True)
    result = (REPO / "tests" / "fixtures" / "claude" / "print-json.stdout").read_text().strip()
    if "'" in result:
        raise RuntimeError("the claude fixture holds a single quote; the shell fake cannot quote it")
    path = into / "claude"
    path.write_text(SH_FAKE.replace("{result}", result))
    path.chmod(0o755)
    return {"claude": path}


def direct_argv(fakes: dict[str, Path], backend: str = "claude", stream: bool = False) -> list[str]:
    """The argv clinvk builds for an ephemeral run, so the direct baseline runs the very same command."""
    spec = RunSpec(prompt=PROMPT, ephemeral=True, stream=stream)
    return BACKENDS[backend].build(spec, str(fakes[backend]), False).argv


def spawn_direct(argv: list[str], prompt: bytes, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=prompt, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          start_new_session=True, check=False)


# ------------------------------------------------------------------------------------------- the server

class Server(ServerProcess):
    """`clinvk serve` started as the test suite starts it (tests/server_process.py), configured for a
    scenario, plus the process figures bench reports (memory, CLI processes)."""

    def __init__(self, root: Path, name: str, fakes: dict[str, Path], *, workers: int, threads: int,
                 max_concurrent: int, max_queued: int):
        self.settings = {"workers": workers, "threads": threads, "max_concurrent_runs": max_concurrent,
                         "max_queued_runs": max_queued}
        config = {
            "backends": {backend: {"command": str(path)} for backend, path in fakes.items()},
            "server": {"max_concurrent_runs": max_concurrent, "max_queued_runs": max_queued},
            "session": {"retention_days": 0},
            # What is measured is the server's cost around a spawn; the warm pool (bench/realcli.py
            # measures it with the genuine CLIs) would replace the spawn, and the C fake has no long-lived mode.
            "run": {"warm_pool": {"enabled": False}},
        }
        super().__init__(root, config=config, workers=workers, threads=threads, name=name)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        return proc_children().get(self.proc.pid, []) if self.proc else []

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *self.worker_pids()]

    def rss_kib(self) -> int:
        """VmRSS of the gunicorn master plus its workers (the CLI processes are not counted)."""
        return rss_kib(self.proc.pid) + sum(rss_kib(pid) for pid in self.worker_pids())

    def cli_processes(self) -> int:
        children = proc_children()
        return sum(len(children.get(worker, [])) for worker in children.get(self.proc.pid, []))


class Client:
    """One HTTP/1.1 client: a kept-alive connection, or a new connection per request."""

    def __init__(self, port: int, keepalive: bool, timeout: float = 60.0):
        self.port, self.keepalive, self.timeout = port, keepalive, timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = self._connection()
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, data
        except BaseException:
            self.close()
            raise
        finally:
            if not self.keepalive:
                self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# Request bodies: the same fast claude run through each API style.
def native_body(prompt: str = PROMPT, *, ephemeral: bool = True, stream: bool = False) -> bytes:
    body: dict[str, Any] = {"backend": "claude", "prompt": prompt}
    if ephemeral:
        body["ephemeral"] = True
    if stream:
        body["output_format"] = "stream-json"
    return json.dumps(body).encode()


def openai_body(prompt: str = PROMPT, *, stream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": "claude", "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def anthropic_body(prompt: str = PROMPT, *, stream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": "claude", "max_tokens": 256, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


ENDPOINTS = {
    "native_ephemeral": ("/api/v1/prompt", native_body()),
    "native_session": ("/api/v1/prompt", native_body(ephemeral=False)),
    "openai": ("/openai/v1/chat/completions", openai_body()),
    "anthropic": ("/anthropic/v1/messages", anthropic_body()),
}


def answered(status: int, data: bytes) -> bool:
    return status == 200 and REPLY.encode() in data


# ------------------------------------------------------------------------------------------- scenarios

def check_tcp_nodelay() -> dict[str, Any]:
    """Do sockets accepted from gunicorn's own listener inherit its TCP_NODELAY (as Linux does)?"""
    from gunicorn.config import Config
    from gunicorn.sock import TCPSocket

    listener = TCPSocket((HOST, 0), Config(), None)
    try:
        with socket.create_connection(listener.getsockname(), timeout=5):
            listener.sock.setblocking(True)
            accepted, _ = listener.accept()
            with accepted:
                return {"listener": bool(listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)),
                        "accepted": bool(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))}
    finally:
        listener.close()


def fake_startup(fakes: dict[str, Path], env: dict[str, str], samples: int) -> dict[str, Any]:
    """The fake alone, spawned directly: what every other figure is compared with."""
    argv = direct_argv(fakes)
    prompt = PROMPT.encode()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        done = spawn_direct(argv, prompt, env)
        times.append(time.perf_counter_ns() - t0)
        if done.returncode != 0 or REPLY.encode() not in done.stdout:
            raise RuntimeError(f"the fake failed: rc={done.returncode} {done.stderr[:300]!r}")
    return {"argv": argv, **summary_ms(times)}


def latency(server: Server, fakes: dict[str, Path], env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """Concurrency 1: each API path, kept-alive and new connection, interleaved with direct spawns."""
    argv, prompt = direct_argv(fakes), PROMPT.encode()
    clients = {}
    for name in ENDPOINTS:
        clients[f"{name}/keepalive"] = Client(server.port, keepalive=True)
        clients[f"{name}/newconn"] = Client(server.port, keepalive=False)
    samples: dict[str, list[int]] = {"direct": [], **{key: [] for key in clients}}
    errors = {key: 0 for key in samples}

    def once(key: str) -> int:
        t0 = time.perf_counter_ns()
        if key == "direct":
            outcome = spawned(argv, prompt, env)
        else:
            outcome, _ = posted(clients[key], *ENDPOINTS[key.split("/")[0]])
        elapsed = time.perf_counter_ns() - t0
        if outcome != "ok":
            errors[key] += 1
        return elapsed

    keys = list(samples)
    rng = random.Random(7)
    for _ in range(plan.latency_warmup):
        for key in keys:
            once(key)
    for key in errors:
        errors[key] = 0
    deadline = time.monotonic() + 60  # bounded in time as well as in count
    for _ in range(plan.latency_samples):
        rng.shuffle(keys)  # interleaved in a new order each round: drift hits every path alike
        for key in keys:
            samples[key].append(once(key))
        if time.monotonic() > deadline:
            break
    for client in clients.values():
        client.close()
    direct = summary_ms(samples["direct"])
    result: dict[str, Any] = {"direct": direct, "paths": {}}
    for key in clients:
        figures = summary_ms(samples[key])
        figures["added_p50_ms"] = round(figures["p50_ms"] - direct["p50_ms"], 3)
        figures["added_p99_ms"] = round(figures["p99_ms"] - direct["p99_ms"], 3)
        figures["errors"] = errors[key]
        result["paths"][key] = figures
    result["direct"]["errors"] = errors["direct"]
    return result


def run_load(clients: int, secs: float, max_per_client: int, setup: Callable[[], Any],
             one: Callable[[Any], str]) -> dict[str, Any]:
    """``clients`` threads, each calling ``one(state)`` until ``secs`` pass or it made ``max_per_client``
    calls; ``one`` returns "ok", "refused" or "failed"."""
    counts = {"ok": 0, "refused": 0, "failed": 0}
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    go = threading.Event()
    window: dict[str, float] = {}

    def worker() -> None:
        state = setup()
        local = {"ok": 0, "refused": 0, "failed": 0}
        try:
            ready.wait(30)
            go.wait(30)
            deadline = window["end"]
            for _ in range(max_per_client):
                if time.monotonic() >= deadline:
                    break
                local[one(state)] += 1
        finally:
            if hasattr(state, "close"):
                state.close()
            with lock:
                for key, value in local.items():
                    counts[key] += value

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait(30)
    start = time.monotonic()
    window["end"] = start + secs
    go.set()
    for thread in threads:
        thread.join(secs + 90)
    elapsed = time.monotonic() - start
    total = sum(counts.values())
    return {**counts, "requests": total, "secs": round(elapsed, 3), "rps": round(counts["ok"] / elapsed, 1)}


def spawned(argv: list[str], prompt: bytes, env: dict[str, str]) -> str:
    """Spawn the fake directly once: "ok", or "failed" when it did not answer."""
    done = spawn_direct(argv, prompt, env)
    return "ok" if done.returncode == 0 and REPLY.encode() in done.stdout else "failed"


def posted(client: Client, path: str, body: bytes) -> tuple[str, str | None]:
    """POST one request: ("ok" | "refused" | "failed", what went wrong: the status or the exception name)."""
    try:
        status, data = client.request("POST", path, body)
    except OSError as exc:
        return "failed", type(exc).__name__
    if answered(status, data):
        return "ok", None
    return ("refused" if status in (429, 503) else "failed"), str(status)


def direct_cell(argv: list[str], env: dict[str, str], clients: int, secs: float,
                max_per_client: int) -> dict[str, Any]:
    """``clients`` threads spawning the fake directly, with the CPU the machine spent meanwhile and the
    CPU seconds the fakes took (``cli_cpu_s``)."""
    prompt = PROMPT.encode()
    meter = CpuMeter([]).start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cell = run_load(clients, secs, max_per_client, lambda: None, lambda _state: spawned(argv, prompt, env))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cell["cpu"] = meter.stop()
    cell["cli_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cell


def server_cell(server: Any, path: str, body: bytes, clients: int, secs: float,
                max_per_client: int) -> dict[str, Any]:
    """``clients`` kept-alive clients POSTing ``body`` to ``path``, with the CPU the server's processes
    (``server.pids()``) took and what went wrong, by kind (``errors``)."""
    errors: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def one(client: Client) -> str:
        outcome, why = posted(client, path, body)
        if why is not None:
            with lock:
                errors[why] += 1
        return outcome

    meter = CpuMeter([server]).start()
    cell = run_load(clients, secs, max_per_client, lambda: Client(server.port, keepalive=True), one)
    cell["cpu"] = meter.stop()
    cell["errors"] = dict(errors)
    return cell


def throughput(server: Server, fakes: dict[str, Path], env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """Runs per second at 1/16/64 clients through /api/v1/prompt (ephemeral), against direct spawning of
    the same fake with as many threads; the server's CPU per request beside it."""
    argv = direct_argv(fakes)
    path, body = ENDPOINTS["native_ephemeral"]
    result: dict[str, Any] = {"path": path, "fake": str(fakes["claude"]), "clients": {}}
    for clients in plan.throughput_clients:
        direct = direct_cell(argv, env, clients, plan.throughput_secs, plan.throughput_max_per_client)
        served = server_cell(server, path, body, clients, plan.throughput_secs, plan.throughput_max_per_client)
        cpu = served["cpu"]
        if served["ok"]:
            served["server_cpu_ms_per_request"] = {
                "user": round(1000 * cpu["server_user_s"] / served["ok"], 3),
                "sys": round(1000 * cpu["server_sys_s"] / served["ok"], 3),
                "cli": round(1000 * cpu["server_cli_s"] / served["ok"], 3)}
        ratio = served["rps"] / direct["rps"] if direct["rps"] else float("nan")
        result["clients"][str(clients)] = {"direct": direct, "server": served, "ratio": round(ratio, 3)}
    return result


def read_stream(response: http.client.HTTPResponse, delays: list[int], deadline: float) -> tuple[bytes, int]:
    """Read a streamed body as it arrives; for each stamp "T<ns>;" record now - ns. Returns (body, stamps)."""
    body = b""
    scanned = 0
    stamps = 0
    while time.monotonic() < deadline:
        chunk = response.read1(65536)
        received = time.monotonic_ns()
        if not chunk:
            break
        body += chunk
        for match in STAMP.finditer(body, scanned):
            delays.append(received - int(match.group(1)))
            stamps += 1
            scanned = match.end()
    return body, stamps


STREAM_STYLES = {
    "ndjson": ("/api/v1/prompt", lambda p: native_body(p, stream=True), b'"type": "done"'),
    "openai_sse": ("/openai/v1/chat/completions", lambda p: openai_body(p, stream=True), b"data: [DONE]"),
    "anthropic_sse": ("/anthropic/v1/messages", lambda p: anthropic_body(p, stream=True), b"event: message_stop"),
}


def streaming(server: Server, fakes: dict[str, Path], env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """Delay from the fake writing an event (its CLOCK_MONOTONIC stamp) to the client reading it."""
    prompt = f"BENCH_EVENTS={plan.stream_events} BENCH_GAP_US={plan.stream_gap_us}"
    result: dict[str, Any] = {"events_per_run": plan.stream_events, "gap_us": plan.stream_gap_us}

    # The floor: the same fake read straight from its stdout pipe.
    delays: list[int] = []
    missing = 0
    for _ in range(plan.stream_runs):
        proc = subprocess.Popen(direct_argv(fakes, stream=True), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        proc.stdin.write(prompt.encode())
        proc.stdin.close()
        body, scanned, count = b"", 0, 0
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            received = time.monotonic_ns()
            if not chunk:
                break
            body += chunk
            for match in STAMP.finditer(body, scanned):
                delays.append(received - int(match.group(1)))
                count += 1
                scanned = match.end()
        proc.stdout.close()
        proc.wait(30)
        missing += plan.stream_events - count
    result["direct_pipe"] = {**summary_ms(delays), "missing_events": missing}

    for style, (path, make_body, end_marker) in STREAM_STYLES.items():
        delays, missing, errors = [], 0, 0
        conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
        for _ in range(plan.stream_runs):
            try:
                conn.request("POST", path, body=make_body(prompt), headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                body, count = read_stream(response, delays, time.monotonic() + 60)
                if response.status != 200 or end_marker not in body:
                    errors += 1
                missing += plan.stream_events - count
            except OSError:
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
        conn.close()
        result[style] = {**summary_ms(delays), "missing_events": missing, "errors": errors}
    return result


def hold(server: Server, plan: Plan, root: Path) -> dict[str, Any]:
    """``hold_runs`` slow runs in flight at once: errors, and server RSS per in-flight request."""
    warm = Client(server.port, keepalive=True)
    path, body = ENDPOINTS["native_ephemeral"]
    for _ in range(5):
        warm.request("POST", path, body)
    warm.close()
    time.sleep(0.5)
    idle = sorted(server.rss_kib() for _ in range(3))[1]

    release = root / f"release-{os.getpid()}"
    prompt_body = native_body(f"BENCH_HOLD={release}")
    statuses: list[int | str] = []
    lock = threading.Lock()

    def one() -> None:
        client = Client(server.port, keepalive=False, timeout=90)
        try:
            status, data = client.request("POST", path, prompt_body)
            outcome: int | str = status if answered(status, data) or status != 200 else "bad body"
        except OSError as exc:
            outcome = type(exc).__name__
        with lock:
            statuses.append(outcome)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(plan.hold_runs)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    in_flight, peak_rss, reached_after = 0, idle, None
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            in_flight = max(in_flight, server.cli_processes())
            if in_flight >= plan.hold_runs:
                reached_after = time.monotonic() - started
                time.sleep(0.2)  # let every request thread settle into its wait
                peak_rss = max(server.rss_kib() for _ in range(3))
                break
            if len(statuses) >= plan.hold_runs:  # everything ended early: nothing more will start
                break
            time.sleep(0.02)
        else:
            peak_rss = server.rss_kib()
    finally:
        release.touch()
    for thread in threads:
        thread.join(90)
    ok = sum(1 for s in statuses if s == 200)
    failures: dict[str, int] = {}
    for status in statuses:
        if status != 200:
            failures[str(status)] = failures.get(str(status), 0) + 1
    added = peak_rss - idle
    return {"runs": plan.hold_runs, "max_in_flight": in_flight, "all_in_flight_after_s":
            round(reached_after, 3) if reached_after is not None else None,
            "ok": ok, "errors": plan.hold_runs - ok, "error_kinds": failures,
            "idle_rss_kib": idle, "peak_rss_kib": peak_rss, "added_rss_kib": added,
            "kib_per_run": round(added / max(1, in_flight), 1)}


def session_queries(stored: int) -> dict[str, dict[str, Any]]:
    """The pages asked for, placed inside the store whatever its size (a third of it is each backend,
    a quarter has status error)."""
    return {
        "newest_page": {"limit": 100, "offset": 0},
        "backend_filter": {"backend": "codex", "limit": 100, "offset": 0},
        "backend_deep_page": {"backend": "claude", "limit": 100, "offset": stored // 4},
        "status_filter_page": {"status": "error", "limit": 50, "offset": stored // 20},
        "max_page_1000": {"limit": 1000, "offset": stored // 2},
    }


def sessions(server: Server, plan: Plan) -> dict[str, Any]:
    """``plan.sessions`` stored sessions: GET /api/v1/sessions over HTTP and SessionStore.list in-process."""
    store = SessionStore(server.home / "sessions.db")
    existing = store.count()
    t0 = time.perf_counter()
    statuses = ("completed", "completed", "error", "active")
    for i in range(existing, plan.sessions):
        session = store.create(backend=("claude", "codex", "gemini")[i % 3], working_dir="/tmp/project",
                               initial_prompt=f"benchmark prompt {i}: refactor the parser", tags=["bench"])
        status = statuses[i % 4]
        if status != "active":
            store.set_status(session.id, status)
    created_s = time.perf_counter() - t0
    total = store.count()
    client = Client(server.port, keepalive=True)
    result: dict[str, Any] = {"sessions": total, "create_secs": round(created_s, 2), "queries": {}}
    for name, query in session_queries(total).items():
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        http_ns, store_ns, errors, returned = [], [], 0, 0
        status, data = client.request("GET", f"/api/v1/sessions?{qs}")  # warm-up
        for _ in range(plan.session_repeats):
            t0 = time.perf_counter_ns()
            status, data = client.request("GET", f"/api/v1/sessions?{qs}")
            http_ns.append(time.perf_counter_ns() - t0)
            if status != 200:
                errors += 1
            else:
                returned = len(json.loads(data)["sessions"])
            t0 = time.perf_counter_ns()
            store.list(**query)
            store_ns.append(time.perf_counter_ns() - t0)
        result["queries"][name] = {"query": qs, "returned": returned, "errors": errors,
                                   "http": summary_ms(http_ns), "store": summary_ms(store_ns)}
    client.close()
    store.close()
    return result


# ------------------------------------------------------------------------------------------- profiling

def start_profiler(server: Server, out: Path) -> subprocess.Popen:
    """py-spy sampling the gunicorn master and its workers (it must be on PATH; a dev tool, not a dependency)."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--profile needs py-spy on PATH: python3 -m pip install py-spy")
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([exe, "record", "--pid", str(server.proc.pid), "--subprocesses", "--nonblocking",
                             "--rate", "250", "--format", fmt, "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach before the load starts
    if proc.poll() is not None:
        raise RuntimeError(f"py-spy failed: {proc.stderr.read().decode(errors='replace')[-500:]}")
    return proc


def stop_profiler(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------------------------------- report

def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    if value != value:  # NaN
        return "n/a"
    return "met" if (value >= target if higher_is_better else value <= target) else "NOT MET"


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """(metric, figure, target, verdict) for the table and the JSON."""
    out: list[dict[str, Any]] = []
    s = results["scenarios"]

    def add(metric: str, value: float, unit: str, target: float | None = None, higher: bool = False) -> None:
        out.append({"metric": metric, "value": value, "unit": unit,
                    "target": target, "verdict": verdict(value, target, higher) if target is not None else ""})

    if "latency" in s:
        lat = s["latency"]
        add("direct spawn of the fake (p50 / p99)", lat["direct"]["p50_ms"], "ms")
        out[-1]["value2"] = lat["direct"]["p99_ms"]
        for key, fig in lat["paths"].items():
            add(f"added latency {key} p50", fig["added_p50_ms"], "ms", TARGETS["added_p50_ms"])
            add(f"added latency {key} p99", fig["added_p99_ms"], "ms", TARGETS["added_p99_ms"])
    checks = results.get("checks", {})
    if "sh_fake_startup" in checks:
        add("C fake / sh fake spawned directly, p50", checks["fake_startup"]["p50_ms"], "ms")
        out[-1]["value2"] = checks["sh_fake_startup"]["p50_ms"]
    if "throughput" in s:
        for fake, label in (("c_fake", "C fake"), ("sh_fake", "sh fake")):
            if fake not in s["throughput"]:
                continue
            by_clients = s["throughput"][fake]["clients"]
            for clients, fig in by_clients.items():
                target = TARGETS["throughput_ratio_16"] if clients == "16" else None
                add(f"throughput {label}, {clients} clients: ratio to direct ({fig['server']['rps']:.0f} vs "
                    f"{fig['direct']['rps']:.0f}/s)", fig["ratio"], "x", target, higher=True)
            most = max(by_clients, key=int)
            last = by_clients[most]["server"]
            add(f"refused + failed at {most} clients ({label})", last["refused"] + last["failed"], "requests", 0)
            cpu = by_clients["16"]["server"].get("server_cpu_ms_per_request") if "16" in by_clients else None
            if cpu and fake == "c_fake":
                add("server CPU per request at 16 clients (user+sys)", round(cpu["user"] + cpu["sys"], 3), "ms")
    if "streaming" in s:
        st = s["streaming"]
        add("stream delay direct pipe (floor) p99", st["direct_pipe"]["p99_ms"], "ms")
        for style in STREAM_STYLES:
            add(f"stream delay {style} p50", st[style]["p50_ms"], "ms")
            add(f"stream delay {style} p99", st[style]["p99_ms"], "ms", TARGETS["stream_p99_ms"])
    if "hold" in s:
        h = s["hold"]
        add(f"concurrent slow runs held ({h['runs']} asked)", h["max_in_flight"], "runs", h["runs"], higher=True)
        add("errors while holding them", h["errors"], "requests", 0)
        add("server RSS per in-flight run", h["kib_per_run"], "KiB", TARGETS["hold_kib_per_run"])
    if "sessions" in s:
        for name, fig in s["sessions"]["queries"].items():
            add(f"sessions {name} over HTTP p99 ({s['sessions']['sessions']} stored)", fig["http"]["p99_ms"], "ms",
                TARGETS["sessions_ms"])
            add(f"sessions {name} store.list p99", fig["store"]["p99_ms"], "ms")
    return out


def print_table(table: list[dict[str, Any]]) -> None:
    width = max(len(r["metric"]) for r in table) + 2
    print(f"\n{'metric':<{width}}{'figure':>16}  {'target':>10}  verdict")
    print("-" * (width + 40))
    for r in table:
        value = f"{r['value']:.3f}" if isinstance(r["value"], float) else str(r["value"])
        if "value2" in r:
            value += f" / {r['value2']:.3f}"
        unit = r["unit"]
        target = "" if r["target"] is None else (f">= {r['target']}" if r["verdict"] and r["metric"].startswith(
            ("throughput", "concurrent")) else f"<= {r['target']}")
        print(f"{r['metric']:<{width}}{value + ' ' + unit:>16}  {target:>10}  {r['verdict']}")


# ------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test in well under a minute")
    parser.add_argument("--json-out", type=Path, help="where to write the figures (default bench/results/<time>.json)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn workers of the servers under test (default 1, clinvk's own default; the "
                             "load generator shares the machine's CPUs with them)")
    parser.add_argument("--only", action="append", choices=["latency", "throughput", "streaming", "hold", "sessions"],
                        help="run only these scenarios (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, stores)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="record the main server (all its workers) with py-spy during latency, throughput and "
                             "streaming: FILE.svg flame graph, FILE.json speedscope, anything else py-spy's raw "
                             "collapsed stacks (needs py-spy on PATH: pip install py-spy)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    wanted = set(args.only or ["latency", "throughput", "streaming", "hold", "sessions"])
    began = time.monotonic()
    now = datetime.now(timezone.utc)
    results: dict[str, Any] = {"date": now.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
                               "machine": machine(), "plan": plan.__dict__ | {"throughput_clients": list(
                                   plan.throughput_clients)}, "scenarios": {}, "errors": {}}
    root = Path(tempfile.mkdtemp(prefix="clinvk-bench-"))
    servers: list[Server] = []
    failed = False

    def scenario(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        nonlocal failed
        if name not in wanted:
            return
        print(f"== {name}", flush=True)
        meter = CpuMeter(list(servers)).start()
        try:
            results["scenarios"][name] = fn()
            results["scenarios"][name]["cpu"] = meter.stop()
        except Exception as exc:  # a harness error: report it, go on with the next scenario
            failed = True
            results["errors"][name] = "".join(traceback.format_exception(exc))
            print(f"   FAILED: {exc}", file=sys.stderr, flush=True)
            for server in servers:
                print(f"   server log ({server.dir.name}):\n{server.log_tail(15)}", file=sys.stderr)

    def start(server: Server) -> Server:
        servers.append(server)
        server.start()
        results["servers"][server.dir.name] = server.settings
        return server

    profiler = None
    try:
        fakes = build_fake(root / "fake")
        sh_fakes = build_sh_fake(root / "fake-sh")
        env = {k: v for k, v in os.environ.items()}
        startup_samples = 20 if args.quick else 200
        results["checks"] = {"tcp_nodelay": check_tcp_nodelay(),
                             "fake_startup": fake_startup(fakes, env, startup_samples),
                             "sh_fake_startup": fake_startup(sh_fakes, env, startup_samples // 2),
                             "loadavg_before": Path("/proc/loadavg").read_text().split()[:3]}
        checks = results["checks"]
        print(f"fake CLI spawned directly: C p50 {checks['fake_startup']['p50_ms']:.3f} ms, sh p50 "
              f"{checks['sh_fake_startup']['p50_ms']:.3f} ms; TCP_NODELAY on accepted sockets: "
              f"{checks['tcp_nodelay']['accepted']}; load average {' '.join(checks['loadavg_before'])}", flush=True)
        results["servers"] = {}
        if wanted & {"latency", "throughput", "streaming"}:
            # The default gate (16 runs, 64 waiting): 64 clients must queue, not be refused.
            main_server = start(Server(root, "main", fakes, workers=args.workers, threads=64, max_concurrent=16,
                                       max_queued=64))
            if args.profile:
                profiler = start_profiler(main_server, args.profile)
            scenario("latency", lambda: latency(main_server, fakes, env, plan))

            def both_fakes() -> dict[str, Any]:
                figures = {"c_fake": throughput(main_server, fakes, env, plan)}
                sh_server = start(Server(root, "main-sh", {**fakes, **sh_fakes}, workers=args.workers, threads=64,
                                         max_concurrent=16, max_queued=64))
                try:
                    figures["sh_fake"] = throughput(sh_server, sh_fakes, env, plan)
                finally:
                    sh_server.stop()
                return figures

            scenario("throughput", both_fakes)
            scenario("streaming", lambda: streaming(main_server, fakes, env, plan))
            if profiler:
                stop_profiler(profiler)
                profiler = None
            main_server.stop()
        if wanted & {"hold", "sessions"}:
            threads = max(256, plan.hold_runs) + 16
            hold_server = start(Server(root, "hold", fakes, workers=args.workers, threads=threads,
                                       max_concurrent=256, max_queued=256))
            scenario("hold", lambda: hold(hold_server, plan, root))
            scenario("sessions", lambda: sessions(hold_server, plan))
            hold_server.stop()
        results["checks"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    except Exception as exc:
        failed = True
        results["errors"]["harness"] = "".join(traceback.format_exception(exc))
        print(f"harness error: {exc}", file=sys.stderr)
    finally:
        if profiler:
            stop_profiler(profiler)
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")

    results["duration_s"] = round(time.monotonic() - began, 1)
    noisy = {name: fig["cpu"]["other_load_cores"] for name, fig in results["scenarios"].items()
             if fig.get("cpu", {}).get("other_load_cores", 0) > 0.25}
    table = rows(results) if results["scenarios"] else []
    results["table"] = table
    if table:
        print_table(table)
    out = args.json_out or BENCH / "results" / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\n{results['mode']} run took {results['duration_s']} s; figures in {out}")
    if noisy:
        print("warning: other processes kept CPUs busy meanwhile (cores: "
              + ", ".join(f"{k} {v}" for k, v in noisy.items()) + "): these figures are disturbed")
    missing = wanted - set(results["scenarios"])
    if missing:
        failed = True
        print(f"scenarios without figures: {', '.join(sorted(missing))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
