"""What per-session CLI homes and the bubblewrap sandbox cost, per backend, with the genuine CLIs.

Each CLI answers from its loopback stub (tests/stubs). Interleaved, ``--runs`` times each:

- ``direct``: the CLI run straight from Python in the operator's (already used) home: what a run
  cost before per-session homes;
- ``new session``: a first turn through clinvk's run lifecycle: a fresh session home is made and
  seeded from the operator's home, unsandboxed;
- ``new session, bwrap``: the same inside the sandbox;
- ``continue`` / ``continue, bwrap``: a second turn of such a session (its home already used).

Also the bytes of a session home after one and two turns. Medians; the machine's load shows in them.
Needs the pinned CLIs (``bash scripts/install-clis.sh``) and bubblewrap.

    python3 bench/isolation.py [--runs 5] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinvk.config import load_config  # noqa: E402
from clinvk.service import PromptRequest, Service  # noqa: E402
from tests import realcli  # noqa: E402
from tests.stubs import anthropic_stub, gemini_stub, openai_responses_stub  # noqa: E402

STUBS = {"claude": anthropic_stub, "codex": openai_responses_stub, "gemini": gemini_stub}
PROMPT = "say hello"


def size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def checked(result, what: str):
    if result.exit_code != 0:
        raise RuntimeError(f"{what} failed: {result.error}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    os.environ.update({k: v for k, v in realcli.base_env().items()})
    for name in set(os.environ) - set(realcli.base_env()):
        del os.environ[name]
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="clinvk-bench-isolation-", dir=os.path.expanduser("~")) as tmp:
        root = Path(tmp)
        workdir = root / "work"
        workdir.mkdir()
        stubs = {name: module.start_stub(mode="echo") for name, module in STUBS.items()}
        try:
            backends = {name: {"command": realcli.find_cli(name), "model": realcli.E2E_MODELS[name],
                               "env": realcli.offline_env(name, stubs[name].url, root / f"{name}-operator")}
                        for name in STUBS}
            services = {mode: Service(load_config(env={"CLINVK_HOME": str(root / f"state-{mode}")}, overrides={
                "backends": backends, "run": {"sandbox": mode},
                "server": {"request_timeout_secs": 120, "blocked_workdir_prefixes": ["/proc"]}}))
                for mode in ("off", "bwrap")}
            for name in STUBS:
                samples: dict[str, list[float]] = {k: [] for k in (
                    "direct", "new session", "new session, bwrap", "continue", "continue, bwrap")}
                sizes: list[tuple[int, int]] = []
                for _ in range(args.runs):
                    prepared = services["off"].prepare(PromptRequest(prompt=PROMPT, backend=name,
                                                                     workdir=str(workdir), ephemeral=True))
                    invocation = prepared.invocation

                    def direct():
                        prepared.backend.before_run(prepared.env)
                        done = subprocess.run(invocation.argv, input=invocation.stdin_text.encode(),
                                              capture_output=True, env=prepared.env, cwd=str(workdir), timeout=120)
                        prepared.backend.after_run(prepared.env)
                        if done.returncode != 0:
                            raise RuntimeError(f"{name} failed directly: {done.stderr.decode()[-400:]}")

                    samples["direct"].append(timed(direct)[0])
                    for mode, label in (("off", ""), ("bwrap", ", bwrap")):
                        service = services[mode]
                        elapsed, result = timed(lambda: checked(service.prepare(PromptRequest(
                            prompt=PROMPT, backend=name, workdir=str(workdir))).execute(), name))
                        samples["new session" + label].append(elapsed)
                        session = service.store.latest_resumable(backend=name)
                        home = service.homes.path(session.id)
                        one = size(home)
                        elapsed, _ = timed(lambda: checked(service.prepare(PromptRequest(
                            prompt="again", session_id=session.id)).execute(), name))
                        samples["continue" + label].append(elapsed)
                        if mode == "off":
                            sizes.append((one, size(home)))
                figures[name] = {k: round(statistics.median(v), 3) for k, v in samples.items()}
                figures[name]["home bytes after 1 turn"] = int(statistics.median(s[0] for s in sizes))
                figures[name]["home bytes after 2 turns"] = int(statistics.median(s[1] for s in sizes))
                print(name, json.dumps(figures[name]), flush=True)
        finally:
            for stub in stubs.values():
                stub.stop()
    print()
    print(f"{'backend':8} {'direct':>8} {'new':>8} {'new+bwrap':>10} {'cont':>8} {'cont+bwrap':>11} "
          f"{'bytes/1 turn':>13}")
    for name, f in figures.items():
        print(f"{name:8} {f['direct']:8.3f} {f['new session']:8.3f} {f['new session, bwrap']:10.3f} "
              f"{f['continue']:8.3f} {f['continue, bwrap']:11.3f} {f['home bytes after 1 turn']:13d}")
    print(f"(seconds, medians of {args.runs}; load average {os.getloadavg()[0]:.1f})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"runs": args.runs, "load": os.getloadavg(),
                                                   "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
