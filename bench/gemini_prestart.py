"""Why gemini has no warm pool: how long a pre-started one-shot gemini waits for its prompt.

gemini's headless mode reads its prompt from stdin only once it has finished starting, and gives up
if nothing arrives within a fixed 500 ms from then (rc 42, "No input provided via stdin"). This
starts the genuine pinned gemini with the argv clinvk builds (prompt on stdin, loopback stub), waits
``delay`` seconds, then writes the prompt, and reports per delay how many runs answered and how long
they took from the prompt to exit. Runs that get no prompt at all give the time gemini takes to
reach its stdin read (their exit time minus the 500 ms) and the CPU one start costs — the price of
keeping a pre-started gemini inside that window at all times.

    python3 bench/gemini_prestart.py [--runs 5] [--delays 0,1,1.5,2,2.5,3,4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
from tests.stubs import gemini_stub  # noqa: E402

PROMPT = "say hello"
STDIN_WAIT_SECS = 0.5  # pipedInputShouldBeAvailableInMs in gemini 0.61.0's readStdin()


def one_run(argv: list[str], env: dict[str, str], cwd: str, stdin_text: str | None, delay: float) -> dict:
    """Start gemini, write ``stdin_text`` after ``delay`` s (None: never, but keep stdin open)."""
    started = time.perf_counter()
    before = os.times()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=True)
    time.sleep(delay)
    prompted = time.perf_counter()
    try:
        if stdin_text is not None:
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
    except BrokenPipeError:  # it already gave up
        pass
    try:
        proc.wait(timeout=120)  # its output is far below a pipe's buffer; stdin stays open until it exits
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    ended = time.perf_counter()
    out, err = proc.stdout.read(), proc.stderr.read()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if not pipe.closed:
            pipe.close()
    after = os.times()
    return {"rc": proc.returncode, "answered": proc.returncode == 0 and "echo" in out.decode(),
            "no_input": b"No input provided" in err, "prompt_to_exit": ended - prompted,
            "spawn_to_exit": ended - started,
            "cpu": (after.children_user - before.children_user) + (after.children_system - before.children_system)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per delay (default 5)")
    parser.add_argument("--delays", default="0,1,1.5,2,2.5,3,4",
                        help="seconds between start and prompt, comma-separated (0 = a cold run)")
    parser.add_argument("--json-out", help="write every run here")
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",") if d]
    executable = realcli.find_cli("gemini")
    if not executable:
        print(f"gemini: not installed ({realcli.INSTALL_HINT})", file=sys.stderr)
        return 2
    backend = BACKENDS["gemini"]
    invocation = backend.build(RunSpec(prompt=PROMPT, model=realcli.E2E_MODELS["gemini"], ephemeral=True),
                               executable, allow_dangerous=False)
    stub = gemini_stub.start_stub(mode="echo")
    results: dict[str, list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="clinvk-gemini-prestart-") as tmp:
            env = {**realcli.cli_env("gemini", stub.url, Path(tmp) / "home"), **backend.default_env}
            for _ in range(args.runs):  # interleaved, so drift hits every delay alike
                for key, text, delay in [("never", None, 0.0)] + [(f"{d:g}", invocation.stdin_text, d)
                                                                   for d in delays]:
                    backend.before_run(env)
                    results.setdefault(key, []).append(one_run(invocation.argv, env, tmp, text, delay))
                    backend.after_run(env)
    finally:
        stub.stop()
    never = results.pop("never")
    ready = statistics.median(r["spawn_to_exit"] for r in never) - STDIN_WAIT_SECS
    cpu = statistics.median(r["cpu"] for r in never)
    print(f"gemini with no prompt: gives up {statistics.median(r['spawn_to_exit'] for r in never):.2f} s after "
          f"start (rc {sorted({r['rc'] for r in never})}, 'No input provided' {sum(r['no_input'] for r in never)}"
          f"/{len(never)}), so it reads stdin ~{ready:.2f} s after start; one start costs {cpu:.2f} s CPU")
    print(f"{'prompt after':>12} {'answered':>9} {'prompt -> exit p50':>19}")
    for key, runs in results.items():
        ok = [r["prompt_to_exit"] for r in runs if r["answered"]]
        p50 = f"{statistics.median(ok) * 1000:.0f} ms" if ok else "-"
        print(f"{key + ' s':>12} {len(ok):>5}/{len(runs):<3} {p50:>19}")
    print(f"keeping one pre-started gemini inside its {STDIN_WAIT_SECS:g} s window at all times means a new "
          f"start every {STDIN_WAIT_SECS:g} s: ~{cpu / STDIN_WAIT_SECS:.1f} cores busy per ready gemini")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"never": never, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
