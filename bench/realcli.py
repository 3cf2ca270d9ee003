"""The genuine claude, codex and gemini CLIs: what `clinvk serve` adds over running each one directly.

Each CLI answers from its loopback stub (tests/stubs, the same ones the end-to-end tests use); the
same command line and environment run once directly from Python (prompt on stdin, like clinvk)
and once through ``POST /api/v1/prompt`` (ephemeral) on a real ``clinvk serve``, interleaved, and
the medians are compared. Needs the pinned CLIs: ``bash scripts/install-clis.sh``.

    python3 bench/realcli.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
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


def direct(name: str, executable: str, env: dict[str, str], workdir: str) -> float:
    """One run of the CLI with the argv clinvk builds, timed from spawn to exit."""
    invocation = BACKENDS[name].build(RunSpec(prompt=PROMPT, model=realcli.E2E_MODELS[name], ephemeral=True),
                                      executable, allow_dangerous=False)
    BACKENDS[name].before_run(env)  # the same stale-lock care clinvk takes (gemini)
    started = time.perf_counter()
    result = subprocess.run(invocation.argv, input=invocation.stdin_text.encode(), capture_output=True,
                            env=env, cwd=workdir, timeout=120)
    elapsed = time.perf_counter() - started
    BACKENDS[name].after_run(env)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed directly: {result.stderr.decode()[-500:]}")
    return elapsed


def through_server(server: ServerProcess, name: str, workdir: str) -> float:
    started = time.perf_counter()
    response = server.post("/api/v1/prompt", {"backend": name, "prompt": PROMPT, "ephemeral": True,
                                              "workdir": workdir})
    elapsed = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or body.get("exit_code") != 0:
        raise RuntimeError(f"{name} failed through clinvk: {body}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per backend and path (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinvk-realcli-") as tmp:
        tmp_path = Path(tmp)
        stubs = {name: module.start_stub(mode="echo") for name, module in STUBS.items()}
        backends, envs = {}, {}
        for name in realcli.BACKENDS:
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
        config = {"backends": backends, "server": {"request_timeout_secs": 120}}
        with ServerProcess(tmp_path, config=config, env=realcli.base_env()) as server:
            print(f"{'backend':8} {'direct p50':>11} {'clinvk p50':>11} {'added':>9}   (n={args.runs}, 1 worker)")
            for name in realcli.BACKENDS:
                times = {"direct": [], "server": []}
                for _ in range(args.runs):  # interleaved, so drift hits both paths alike
                    times["direct"].append(direct(name, backends[name]["command"], envs[name], str(workdir)))
                    times["server"].append(through_server(server, name, str(workdir)))
                d, s = statistics.median(times["direct"]), statistics.median(times["server"])
                print(f"{name:8} {d * 1000:9.0f} ms {s * 1000:9.0f} ms {(s - d) * 1000:+7.1f} ms")
        for stub in stubs.values():
            stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
