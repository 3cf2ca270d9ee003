"""The warm pool with the genuine claude and codex: a pooled run gives the reply and usage of a cold
one (same stub, same prompt), and the stub saw the same request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.realcli

ROOT = Path(__file__).resolve().parents[2]


def ask(client, backend, workdir):
    body = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "say hello", "ephemeral": True,
                                               "workdir": str(workdir)}).json
    assert body["exit_code"] == 0 and "error" not in body, body
    return body["output"], body["token_usage"], body["model"]


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_pooled_reply_and_usage_equal_cold(make_app, realcli_config, stubs, tmp_path, backend):
    workdir = tmp_path / "work"
    workdir.mkdir()
    cold_app = make_app(**{**realcli_config, "run": {**realcli_config["run"], "warm_pool": {"enabled": False}}})
    cold = ask(cold_app.test_client(), backend, workdir)
    app = make_app(**realcli_config)
    client = app.test_client()
    first = ask(client, backend, workdir)  # a miss: cold, and the pool starts a process for this launch
    pool = app.extensions["clinvk.service"].warm_pool
    assert wait_for(lambda: pool.idle() == 1, 60)
    pooled = ask(client, backend, workdir)
    assert pool.counts["hit"] == 1
    assert pooled == first == cold and pooled[0] == "echo: say hello"
    requests = [r for r in stubs[backend].requests if r.get("user_text") == "say hello"]
    assert len(requests) == 3 and len({r.get("n_turns") for r in requests}) == 1


def test_gemini_one_shot_gives_up_on_a_prompt_that_comes_late(tmp_path):
    """Why gemini is not pooled (tests/fixtures/warm/gemini.md): started ahead with its stdin open, the
    genuine gemini answers a prompt written at once but exits 42 "No input provided" when none comes.
    Runs bench/gemini_prestart.py, which measures the window."""
    out = tmp_path / "prestart.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gemini_prestart.py"), "--runs", "1", "--delays", "0",
                          "--json-out", str(out)], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, f"bench/gemini_prestart.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    figures = json.loads(out.read_text())
    [never], [at_once] = figures["never"], figures["0"]
    assert never["rc"] == 42 and never["no_input"] and not never["answered"]
    assert at_once["rc"] == 0 and at_once["answered"]
    assert "cores busy per ready gemini" in run.stdout
