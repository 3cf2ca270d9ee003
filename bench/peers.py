#!/usr/bin/env python3
"""clinvk beside the Python peers that wrap the same claude CLI, measured together in one run.

    python3 bench/peers.py                # full run, ~2 minutes (+ the peers' first install from PyPI)
    python3 bench/peers.py --quick        # small counts
    python3 bench/peers.py --fake c       # the C fake instead of the /bin/sh one
    python3 bench/peers.py --no-peers     # clinvk alone: offline, no install
    python3 bench/peers.py --no-peers --compare-tree /tmp/base   # clinvk before/after a change
    python3 bench/peers.py --no-peers --workers 1 2               # each server with 1, then 2 workers

The peers, pinned: cli2api and agentrelay-cli from PyPI, each installed once into its own venv under
``~/.cache/clinvk-bench/`` (``--cache``). Every server runs on 127.0.0.1 with a temporary HOME and
working directory and the same fake claude as bench/run.py; the load generator, the direct-spawn
baseline and the CPU accounting are bench/run.py's. Beside them, bench/minimal_app.py: Flask +
gunicorn (clinvk's gunicorn options) doing only the spawn, the floor of such a server
(``--no-baseline-app`` leaves it out). Measured, for each server:

- added latency p50/p99 on a kept-alive connection at concurrency 1, every server and the direct
  spawn interleaved in a new order each round;
- throughput at 16 clients (kept-alive) as a ratio to spawning the fake directly from 16 threads,
  in three rounds of 1 s cells, the servers in a new order each round and each cell right after a
  direct cell of its own;
- errors (refusals and failures) in both;
- CPU per answered request at 16 clients from /proc: the server's own processes (user + sys), and
  apart from it what its reaped children cost (the fake itself plus each fork before exec).

It prints a markdown table and writes the figures as JSON (default
``bench/results/peers-<time>.json``). Timings are reported, never asserted; the exit status is
non-zero only when the harness failed (a server did not install, start or produce figures).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (bench/run.py: fakes, load generator, CPU meter)
from run import HOST, PROMPT, Client, CpuMeter  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clinvk-bench"


@dataclass(frozen=True)
class Package:
    """A peer as published on PyPI, pinned."""

    name: str
    version: str
    script: str  # the console script that starts its server

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


PACKAGES = {
    "cli2api": Package("cli2api", "0.2.5", "cli2api"),
    "agentrelay-cli": Package("agentrelay-cli", "0.5.5", "agent-relay"),
}


@dataclass
class Plan:
    latency_samples: int  # per target, at concurrency 1
    latency_warmup: int
    clients: int
    throughput_rounds: int
    throughput_secs: float  # per cell and round (direct, then the server)
    throughput_max_per_client: int


FULL = Plan(latency_samples=300, latency_warmup=20, clients=16, throughput_rounds=3, throughput_secs=1.0,
            throughput_max_per_client=20_000)
QUICK = Plan(latency_samples=15, latency_warmup=3, clients=16, throughput_rounds=1, throughput_secs=0.5,
             throughput_max_per_client=2_000)


# ------------------------------------------------------------------------------------------- installing

def ensure_installed(package: Package, cache: Path) -> tuple[Path, list[str]]:
    """The peer's console script in its own venv (created and pip-installed the first time), and the
    venv's ``pip freeze``."""
    venv = cache / f"{package.name}-{package.version}"
    script = venv / "bin" / package.script
    done = venv / "installed.txt"  # written last: a half-made venv is made again
    if not (done.exists() and script.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        print(f"installing {package.label} into {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", f"{package.name}=={package.version}"],
                             capture_output=True, text=True, timeout=900)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install {package.name}=={package.version} failed:\n{pip.stderr[-2000:]}")
        freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True,
                                text=True, check=True, timeout=120).stdout
        done.write_text(freeze)
    return script, done.read_text().split()


# ------------------------------------------------------------------------------------------- servers

def tree(root_pid: int, skip_comm: str) -> list[int]:
    """root_pid and its descendants, leaving out processes named ``skip_comm`` and what they started."""
    children = run.proc_children()
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == skip_comm:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class PeerServer:
    """A peer's server as a subprocess: its own HOME and working directory (so no user config or
    ``.env`` is read), the fake claude first on PATH. Exposes what ``run.CpuMeter`` reads (pids)."""

    def __init__(self, root: Path, name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str,
                 workers: int):
        self.dir = root / name
        (self.dir / "home").mkdir(parents=True)
        self.argv, self.port, self.ready_path, self.workers = argv, port, ready_path, workers
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLINVK_", "CLI2API_", "AGENT_RELAY_", "CLAUDE_RELAY_", "ANTHROPIC_"))}
        self.env.update(HOME=str(self.dir / "home"), **env)
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, within: float = 60.0) -> "PeerServer":
        with open(self.log_path, "wb") as log:
            # stdin /dev/null: a CLI the peer starts without a stdin pipe inherits it, and must see EOF.
            self.proc = subprocess.Popen(self.argv, cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + within
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.dir.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _ = Client(self.port, keepalive=False, timeout=5).request("GET", self.ready_path)
                if status == 200 and len(self.pids()) >= self.workers + (self.workers > 1):  # + the master
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.dir.name} did not answer {self.ready_path} within {within} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return tree(self.proc.pid, skip_comm="claude")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: uvicorn workers go with it
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def cli2api_server(root: Path, script: Path, fake: Path) -> PeerServer:
    """cli2api as its docs run it: the ``cli2api`` command, configured by CLI2API_* variables."""
    port = run.free_port()
    env = {"CLI2API_HOST": HOST, "CLI2API_PORT": str(port), "CLI2API_CLAUDE_CLI_PATH": str(fake),
           "PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return PeerServer(root, "cli2api", [str(script)], env, port, "/v1/models", workers=1)


def agentrelay_server(root: Path, name: str, script: Path, fake: Path, extra: list[str], workers: int) -> PeerServer:
    """agent-relay serve; it runs ``claude`` from PATH."""
    port = run.free_port()
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(script), "serve", "--host", HOST, "--port", str(port), *extra]
    return PeerServer(root, name, argv, env, port, "/health", workers=workers)


@dataclass
class Target:
    """One row of the table: a server and the request sent to it."""

    label: str
    server: Any  # run.Server or PeerServer
    path: str
    body: bytes


# ------------------------------------------------------------------------------------------- measuring

def latency(targets: list[Target], argv: list[str], env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """Concurrency 1 on kept-alive connections, each round every target and the direct spawn once, in a
    new order; bounded in count and in time."""
    prompt = PROMPT.encode()
    clients = {t.label: Client(t.server.port, keepalive=True) for t in targets}
    by_label = {t.label: t for t in targets}
    samples: dict[str, list[int]] = {"direct": [], **{label: [] for label in clients}}
    errors: dict[str, collections.Counter] = {key: collections.Counter() for key in samples}

    def once(key: str) -> int:
        t0 = time.perf_counter_ns()
        if key == "direct":
            outcome, why = run.spawned(argv, prompt, env), "failed"
        else:
            target = by_label[key]
            outcome, why = run.posted(clients[key], target.path, target.body)
        elapsed = time.perf_counter_ns() - t0
        if outcome != "ok":
            errors[key][why] += 1
        return elapsed

    keys = list(samples)
    rng = random.Random(7)
    for _ in range(plan.latency_warmup):
        for key in keys:
            once(key)
    for counter in errors.values():
        counter.clear()
    deadline = time.monotonic() + 120
    for _ in range(plan.latency_samples):
        rng.shuffle(keys)
        for key in keys:
            samples[key].append(once(key))
        if time.monotonic() > deadline:
            break
    for client in clients.values():
        client.close()
    direct = run.summary_ms(samples["direct"])
    result: dict[str, Any] = {"direct": {**direct, "errors": dict(errors["direct"])}, "targets": {}}
    for label in clients:
        fig = run.summary_ms(samples[label])
        fig["added_p50_ms"] = round(fig["p50_ms"] - direct["p50_ms"], 3)
        fig["added_p99_ms"] = round(fig["p99_ms"] - direct["p99_ms"], 3)
        fig["errors"] = dict(errors[label])
        result["targets"][label] = fig
    return result


SUMMED = ("ok", "refused", "failed", "requests", "secs")


def throughput(targets: list[Target], argv: list[str], env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """``plan.throughput_rounds`` rounds, each target in a new order per round and each of its cells right
    after a direct cell of its own, so a change in the machine's load hits every server and its baseline
    alike. Counts and CPU are summed over the rounds."""
    sums = {t.label: {"direct": dict.fromkeys(SUMMED + ("cli_cpu_s",), 0.0),
                      "server": dict.fromkeys(SUMMED + ("server_user_s", "server_sys_s", "server_cli_s",
                                                         "other_load_core_s"), 0.0),
                      "errors": collections.Counter()} for t in targets}
    order = list(targets)
    rng = random.Random(11)
    for _ in range(plan.throughput_rounds):
        rng.shuffle(order)
        for target in order:
            cell = (plan.clients, plan.throughput_secs, plan.throughput_max_per_client)
            direct = run.direct_cell(argv, env, *cell)
            served = run.server_cell(target.server, target.path, target.body, *cell)
            into = sums[target.label]
            for key in into["direct"]:
                into["direct"][key] += direct[key]
            for key in SUMMED:
                into["server"][key] += served[key]
            for key in ("server_user_s", "server_sys_s", "server_cli_s"):
                into["server"][key] += served["cpu"][key]
            into["server"]["other_load_core_s"] += served["cpu"]["other_load_cores"] * served["cpu"]["secs"]
            into["errors"].update(served["errors"])
    result: dict[str, Any] = {"clients": plan.clients, "rounds": plan.throughput_rounds, "targets": {}}
    for label, into in sums.items():
        direct, served = into["direct"], into["server"]
        direct["rps"] = round(direct["ok"] / direct["secs"], 1) if direct["secs"] else float("nan")
        direct["cli_cpu_ms_per_run"] = round(1000 * direct.pop("cli_cpu_s") / direct["ok"], 3) if direct["ok"] else None
        served["rps"] = round(served["ok"] / served["secs"], 1) if served["secs"] else float("nan")
        served["other_load_cores"] = round(served.pop("other_load_core_s") / max(served["secs"], 1e-9), 2)
        served["errors"] = dict(into["errors"])
        if served["ok"]:
            served["server_cpu_ms_per_request"] = round(
                1000 * (served["server_user_s"] + served["server_sys_s"]) / served["ok"], 3)
            served["children_cpu_ms_per_request"] = round(1000 * served["server_cli_s"] / served["ok"], 3)
        ratio = served["rps"] / direct["rps"] if direct["rps"] else float("nan")
        result["targets"][label] = {"direct": direct, "server": served, "ratio": round(ratio, 3)}
    return result


# ------------------------------------------------------------------------------------------- report

def errors_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} × {kind}" for kind, n in sorted(counts.items())) or "0"


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target, in the order they were set up."""
    lat = results["latency"]
    thr = results["throughput"]
    out = []
    for label in results["targets"]:
        fig, cell = lat["targets"][label], thr["targets"][label]
        served = cell["server"]
        errors = collections.Counter(fig["errors"]) + collections.Counter(served["errors"])
        out.append({"server": label, "added_p50_ms": fig["added_p50_ms"], "added_p99_ms": fig["added_p99_ms"],
                    "ratio": cell["ratio"], "rps": served["rps"], "direct_rps": cell["direct"]["rps"],
                    "errors": dict(errors), "server_cpu_ms": served.get("server_cpu_ms_per_request"),
                    "children_cpu_ms": served.get("children_cpu_ms_per_request")})
    return out


def markdown(rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    direct = results["latency"]["direct"]
    cli_ms = [c["direct"]["cli_cpu_ms_per_run"] for c in results["throughput"]["targets"].values()
              if c["direct"].get("cli_cpu_ms_per_run")]
    lines = [f"{results['fake']} fake spawned directly: p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms "
             f"(concurrency 1); its processes take {min(cli_ms, default=float('nan')):.2f}–"
             f"{max(cli_ms, default=float('nan')):.2f} ms CPU per run. {results['throughput']['clients']} "
             "keep-alive clients for throughput and CPU.", "",
             "| server | added p50 / p99, keep-alive | throughput vs direct | errors | server CPU per request "
             "(+ its children: fake + fork) |",
             "|---|---|---|---|---|"]
    for r in rows:
        cpu = "n/a" if r["server_cpu_ms"] is None else f"{r['server_cpu_ms']:.2f} ms (+{r['children_cpu_ms']:.2f})"
        lines.append(f"| {r['server']} | {r['added_p50_ms']:+.2f} / {r['added_p99_ms']:+.2f} ms | {r['ratio']:.2f}× "
                     f"({r['rps']:.0f} vs {r['direct_rps']:.0f}/s) | {errors_text(r['errors'])} | {cpu} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    pins = "".join(f"\n  {p.label}" for p in PACKAGES.values())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"peers (pinned, each installed from PyPI into its own venv on first use):{pins}")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run in well under a minute")
    parser.add_argument("--fake", choices=["sh", "c"], default="sh",
                        help="the fake claude every server runs: the /bin/sh one (default, ~1 ms) or the C one")
    parser.add_argument("--peer", action="append", choices=sorted(PACKAGES),
                        help="compare with only these peers (repeatable; default: all)")
    parser.add_argument("--no-peers", action="store_true", help="clinvk alone (nothing installed: works offline)")
    parser.add_argument("--compare-tree", type=Path, metavar="DIR",
                        help="also measure the clinvk of another source tree (e.g. `git archive <commit> | tar -x "
                             "-C DIR`), in the same run: before/after a change")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], metavar="N",
                        help="gunicorn workers of clinvk and of the minimal app; several counts give a row "
                             "each (default 1, clinvk's own default)")
    parser.add_argument("--no-baseline-app", action="store_true",
                        help="leave out bench/minimal_app.py (Flask + gunicorn doing only the spawn)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the peers' venvs live (default {CACHE})")
    parser.add_argument("--json-out", type=Path, help="where to write the figures (default bench/results/peers-<time>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="run the harness, the servers and the fakes at this nice value (e.g. -10, as root) "
                             "when other jobs share the CPUs: the kernel shares a busy CPU per thread, which "
                             "favours a server with many threads over a single-threaded event loop")
    return parser.parse_args(argv)


def workers_label(workers: int) -> str:
    return f"{workers} worker" + ("s" if workers > 1 else "")


def minimal_app_server(root: Path, workers: int, fakes: dict[str, Path]) -> PeerServer:
    """bench/minimal_app.py: Flask + gunicorn (clinvk's gunicorn options) doing only the spawn."""
    port = run.free_port()
    argv = [sys.executable, str(run.BENCH / "minimal_app.py"), "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--threads", "64", "--", *run.direct_argv(fakes)]
    return PeerServer(root, f"minimal-app-{workers}", argv, {}, port, "/health", workers=workers)


def clinvk_targets(args: argparse.Namespace, root: Path, fakes: dict[str, Path], workers: int,
                   start: Callable[[Any], Any]) -> list[Target]:
    """clinvk of this tree (and of ``--compare-tree``) on both paths, and the minimal app, with ``workers``."""
    per = workers_label(workers)
    trees = [("clinvk", None)] + ([(f"clinvk of {args.compare_tree.name}", args.compare_tree)] if args.compare_tree else [])
    targets = []
    for name, tree_dir in trees:
        server = run.Server(root, f"{name.replace(' ', '-')}-{workers}", fakes, workers=workers, threads=64,
                            max_concurrent=16, max_queued=64)
        if tree_dir is not None:
            server.env["PYTHONPATH"] = str(tree_dir.resolve())  # its clinvk package, not this one
        start(server)
        targets += [Target(f"{name}, OpenAI path ({per})", server, "/openai/v1/chat/completions", run.openai_body()),
                    Target(f"{name}, native ephemeral ({per})", server, "/api/v1/prompt", run.native_body())]
    if not args.no_baseline_app:
        minimal = start(minimal_app_server(root, workers, fakes))
        targets.append(Target(f"minimal Flask app, OpenAI path ({per})", minimal, "/openai/v1/chat/completions",
                              run.openai_body()))
    return targets


def setup_targets(args: argparse.Namespace, root: Path, fake: Path, fakes: dict[str, Path],
                  results: dict[str, Any], start: Callable[[Any], Any]) -> list[Target]:
    """Start clinvk, the minimal app and every peer that installs; a peer that fails is reported, the
    rest go on."""
    targets = []
    for workers in args.workers:
        targets += clinvk_targets(args, root, fakes, workers, start)
    wanted = [] if args.no_peers else (args.peer or list(PACKAGES))
    chat = "/v1/chat/completions"
    for name in wanted:
        package = PACKAGES[name]
        try:
            script, freeze = ensure_installed(package, args.cache)
            results["peers"][name] = {"version": package.version, "venv": freeze}
            if name == "agentrelay-cli":
                # One worker with clinvk's 16 runs beside it; then its defaults (a worker per CPU, 10 runs
                # each, refusing with 503 beyond).
                one = start(agentrelay_server(root, "agentrelay-1", script, fake,
                                              ["--workers", "1", "--max-concurrent", "16"], workers=1))
                default = start(agentrelay_server(root, "agentrelay-default", script, fake, [],
                                                  workers=len(os.sched_getaffinity(0))))
                targets += [Target(f"{package.label}, 1 worker, 16 runs", one, chat, run.openai_body()),
                            Target(f"{package.label}, defaults", default, chat, run.openai_body())]
            else:
                server = start(cli2api_server(root, script, fake))
                targets.append(Target(f"{package.label} (defaults)", server, chat, run.openai_body()))
        except Exception as exc:  # report it, measure the others
            results["errors"][name] = "".join(traceback.format_exception(exc))
            print(f"{name}: {exc}", file=sys.stderr, flush=True)
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.nice:
        os.nice(args.nice)  # inherited by every process started below
    now = datetime.now(timezone.utc)
    began = time.monotonic()
    results: dict[str, Any] = {"date": now.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
                               "fake": args.fake, "nice": os.getpriority(os.PRIO_PROCESS, 0),
                               "machine": run.machine(), "plan": plan.__dict__,
                               "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
                               "peers": {}, "targets": {}, "errors": {}}
    root = Path(tempfile.mkdtemp(prefix="clinvk-peers-"))
    servers: list[Any] = []

    def start(server: Any) -> Any:
        servers.append(server)
        return server.start()

    try:
        c_fakes = run.build_fake(root / "fake")
        fakes = c_fakes if args.fake == "c" else {**c_fakes, **run.build_sh_fake(root / "fake-sh")}
        env = dict(os.environ)
        direct = run.direct_argv(fakes)
        targets = setup_targets(args, root, fakes["claude"], fakes, results, start)
        results["targets"] = {t.label: {"port": t.server.port, "path": t.path} for t in targets}
        print(f"== latency ({', '.join(results['targets'])})", flush=True)
        meter = CpuMeter([]).start()
        results["latency"] = latency(targets, direct, env, plan)
        results["latency"]["cpu"] = meter.stop()
        print(f"== throughput at {plan.clients} clients", flush=True)
        results["throughput"] = throughput(targets, direct, env, plan)
        results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    except Exception as exc:
        results["errors"]["harness"] = "".join(traceback.format_exception(exc))
        print(f"harness error: {exc}", file=sys.stderr)
        for server in servers:
            print(f"   log of {server.dir.name}:\n{server.log_tail(15)}", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    results["duration_s"] = round(time.monotonic() - began, 1)
    if "throughput" in results:
        results["table"] = table(results)
        results["markdown"] = markdown(results["table"], results)
        print("\n" + results["markdown"])
    out = args.json_out or run.BENCH / "results" / f"peers-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    other = [c["server"]["other_load_cores"] for c in results.get("throughput", {}).get("targets", {}).values()]
    print(f"\n{results['mode']} run took {results['duration_s']} s; load average {' '.join(results['loadavg_before'])} "
          f"before, other processes kept {max(other, default=0):.2f} cores busy at most; figures in {out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
