"""The genuine claude, codex and gemini CLIs: what `clinvk serve` adds over running each one directly,
and what its warm pool (``run.warm_pool``) saves.

Each CLI answers from its loopback stub (tests/stubs, the same ones the end-to-end tests use). Per
round and backend, interleaved: the CLI spawned directly from Python with the argv clinvk builds
(prompt on stdin, timed from spawn to exit), then ``POST /api/v1/prompt`` (ephemeral) on a
``clinvk serve`` with the warm pool off ("cold"), then on one with it on ("pooled"). Between rounds
the run waits ``--settle`` seconds, the time a pooled CLI needs to finish starting (claude prints
nothing until its first message, so a request right after the previous one may meet a CLI still
starting, which is no slower than a cold one). Replies and usage of the three paths are compared.
Needs the pinned CLIs: ``bash scripts/install-clis.sh``.

    python3 bench/realcli.py [--runs 7] [--settle 5] [--backends claude,codex,gemini]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinvk.backends import BACKENDS, RunSpec  # noqa: E402
from tests import realcli  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from tests.stubs import anthropic_stub, gemini_stub, openai_responses_stub  # noqa: E402

STUBS = {"claude": anthropic_stub, "codex": openai_responses_stub, "gemini": gemini_stub}
PROMPT = "say hello"


def direct(name: str, executable: str, env: dict[str, str], workdir: str) -> tuple[float, tuple]:
    """One run of the CLI with the argv clinvk builds, timed from spawn to exit; (seconds, answer)."""
    backend = BACKENDS[name]
    invocation = backend.build(RunSpec(prompt=PROMPT, model=realcli.E2E_MODELS[name], ephemeral=True),
                               executable, allow_dangerous=False)
    backend.before_run(env)  # the same stale-lock care clinvk takes (gemini)
    started = time.perf_counter()
    result = subprocess.run(invocation.argv, input=invocation.stdin_text.encode(), capture_output=True,
                            env=env, cwd=workdir, timeout=120)
    elapsed = time.perf_counter() - started
    backend.after_run(env)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed directly: {result.stderr.decode()[-500:]}")
    parsed = backend.parse_output(result.stdout.decode(), result.stderr.decode(), result.returncode)
    usage = parsed.token_usage.to_dict() if parsed.token_usage else None
    return elapsed, (parsed.text, json.dumps(usage, sort_keys=True))


def through_server(server: ServerProcess, name: str, workdir: str) -> tuple[float, tuple]:
    started = time.perf_counter()
    response = server.post("/api/v1/prompt", {"backend": name, "prompt": PROMPT, "ephemeral": True,
                                              "workdir": workdir})
    elapsed = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or body.get("exit_code") != 0:
        raise RuntimeError(f"{name} failed through clinvk: {body}")
    return elapsed, (body.get("output"), json.dumps(body.get("token_usage"), sort_keys=True))


def pool_counts(server: ServerProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("clinvk_warm_pool_events_total{"):
            labels, value = line.rsplit(" ", 1)
            event = labels.split('event="', 1)[1].split('"', 1)[0]
            counts[event] = counts.get(event, 0) + int(float(value))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per backend and path (default 7)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between rounds, for the pooled CLI to finish starting (default 5)")
    parser.add_argument("--backends", default=",".join(realcli.BACKENDS))
    parser.add_argument("--json-out", help="write the raw times here")
    args = parser.parse_args()
    names = [n for n in args.backends.split(",") if n]
    raw: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="clinvk-realcli-") as tmp:
        tmp_path = Path(tmp)
        stubs = {name: STUBS[name].start_stub(mode="echo") for name in names}
        backends, envs = {}, {}
        for name in names:
            executable = realcli.find_cli(name)
            if not executable:
                print(f"{name}: not installed ({realcli.INSTALL_HINT})", file=sys.stderr)
                return 2
            extra = realcli.offline_env(name, stubs[name].url, tmp_path / f"{name}-home")
            backends[name] = {"command": executable, "env": extra, "model": realcli.E2E_MODELS[name]}
            envs[name] = {**realcli.base_env(), **extra}
            if name == "gemini":
                envs[name].update(BACKENDS["gemini"].default_env)
        workdir = tmp_path / "work"
        workdir.mkdir()
        poolable = [n for n in names if n in ("claude", "codex")]
        base = {"backends": backends, "server": {"request_timeout_secs": 120, "metrics_enabled": True}}
        cold_cfg = dict(base, run={"warm_pool": {"enabled": False}})
        pooled_cfg = dict(base, run={"warm_pool": {"enabled": True, "backends": poolable,
                                                   "max_processes": max(1, len(poolable))}})
        (tmp_path / "cold").mkdir()
        (tmp_path / "pooled").mkdir()
        with ServerProcess(tmp_path / "cold", config=cold_cfg, env=realcli.base_env()) as cold, \
                ServerProcess(tmp_path / "pooled", config=pooled_cfg, env=realcli.base_env()) as pooled:
            for name in poolable:  # the pool learns the launch key from a first request
                through_server(pooled, name, str(workdir))
            time.sleep(args.settle)
            print(f"{'backend':8} {'direct p50':>11} {'cold p50':>10} {'pooled p50':>11} {'pooled/direct':>14} "
                  f"{'same reply+usage':>17}   (n={args.runs}, 1 worker, settle {args.settle:g} s)")
            answers: dict[str, set] = {name: set() for name in names}
            times: dict[str, dict[str, list[float]]] = {n: {"direct": [], "cold": [], "pooled": []} for n in names}
            for _ in range(args.runs):  # interleaved, so drift hits every path alike
                for name in names:
                    for path, run in (("direct", lambda: direct(name, backends[name]["command"], envs[name],
                                                                 str(workdir))),
                                      ("cold", lambda: through_server(cold, name, str(workdir))),
                                      ("pooled", lambda: through_server(pooled, name, str(workdir)))):
                        elapsed, answer = run()
                        times[name][path].append(elapsed)
                        answers[name].add(answer)
                time.sleep(args.settle)
            for name in names:
                d, c, p = (statistics.median(times[name][k]) for k in ("direct", "cold", "pooled"))
                same = "yes" if len(answers[name]) == 1 else f"NO: {sorted(answers[name])}"
                print(f"{name:8} {d * 1000:8.0f} ms {c * 1000:7.0f} ms {p * 1000:8.0f} ms {p / d:13.2f}x {same:>17}")
            print(f"pool events (pooled server): {pool_counts(pooled)}")
            raw = times
        for stub in stubs.values():
            stub.stop()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
