"""Per-session CLI homes with the genuine CLIs, sandboxed: each session's transcript lives in its own
home (seeded from the operator's home in ``backends.<name>.env``), continuation finds it there,
deleting the session removes it, and an ephemeral run leaves nothing anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinvk.spare_dirs import SPARES
from tests.helpers import wait_for

pytestmark = pytest.mark.realcli

BACKENDS = ["claude", "codex", "gemini"]
# Where each CLI keeps a session's transcript, relative to its home directory.
TRANSCRIPTS = {"claude": ".claude/projects/*/*.jsonl", "codex": ".codex/sessions/**/rollout-*.jsonl",
               "gemini": ".gemini/tmp/*/chats/session-*"}


def transcripts(home: Path, backend: str) -> list[Path]:
    return list(home.glob(TRANSCRIPTS[backend]))


def operator_home(realcli_config, backend: str) -> Path:
    return Path(realcli_config["backends"][backend]["env"]["HOME"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_lives_in_its_own_home(realcli_app, realcli_config, clinvk_home, stubs, tmp_path, backend):
    client = realcli_app.test_client()
    assert client.get("/health").json["sandbox"]["mode"] == "bwrap"
    workdir = tmp_path / "work"
    workdir.mkdir()
    first = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "one", "workdir": str(workdir)}).json
    assert first["exit_code"] == 0, first
    sid = first["session_id"]
    home = clinvk_home / "homes" / sid
    assert transcripts(home, backend), sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not transcripts(operator_home(realcli_config, backend), backend)  # nothing in the shared home

    other = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "unrelated",
                                                "workdir": str(workdir)}).json
    assert other["exit_code"] == 0, other
    assert len(transcripts(home, backend)) == 1  # the other session wrote into its own home

    second = client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "two"}).json
    assert second["output"] == "echo: two", second
    seen = [r for r in stubs[backend].requests if r.get("user_text") == "two"][-1]
    assert seen["n_turns"] >= 3, seen  # the earlier turn reached the vendor API again

    assert client.delete(f"/api/v1/sessions/{sid}").status_code == 200
    assert not home.exists()
    assert (clinvk_home / "homes" / other["session_id"]).is_dir()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ephemeral_runs_leave_nothing(realcli_app, realcli_config, clinvk_home, backend):
    client = realcli_app.test_client()
    body = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "x", "ephemeral": True}).json
    assert body["exit_code"] == 0, body
    chat = client.post("/openai/v1/chat/completions", json={"model": backend,
                                                             "messages": [{"role": "user", "content": "y"}]})
    assert chat.status_code == 200, chat.json
    pool = realcli_app.extensions["clinvk.service"].warm_pool
    if pool is not None:  # its standby CLIs wait in throwaway homes of their own, gone with them
        pool.close()

    def leftovers():  # what an untouched run gave back waits, empty, for the next run (clinvk.spare_dirs)
        return [p for root in (clinvk_home / "tmp-homes", clinvk_home / "homes") if root.exists()
                for p in root.iterdir() if str(p) not in SPARES.held()]
    assert wait_for(lambda: leftovers() == [], 30), leftovers()
    assert not transcripts(operator_home(realcli_config, backend), backend)
