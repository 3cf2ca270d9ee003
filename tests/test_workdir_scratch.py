"""Workdir policy gaps: a run without a workdir gets a fresh scratch directory under clinvk's state
directory (per run when ephemeral, per session otherwise), never the server's own directory; the
default blocked list covers the state directory, the service user's credentials and system state;
the policy comes before any existence check, and the error does not tell blocked from missing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from clinvk.config import DEFAULT_BLOCKED_WORKDIR_PREFIXES
from clinvk.scratch import prune_scratch, scratch_root
from clinvk.spare_dirs import SPARES


def run(client, **body):
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", **body})
    assert response.status_code == 200, response.data
    return response.get_json()


def test_without_workdir_an_ephemeral_run_gets_an_empty_scratch_dir_of_its_own(make_app, fake_clis, clinvk_home,
                                                                               tmp_path):
    # No warm pool: a standby CLI keeps a scratch dir of its own until it ends (tests/test_homes.py).
    client = make_app(server={"allowed_workdir_prefixes": [str(tmp_path / "projects")]},
                      run={"warm_pool": {"enabled": False}}).test_client()
    run(client, ephemeral=True)
    run(client, ephemeral=True)
    first, second = (Path(c["cwd"]) for c in fake_clis.calls())
    root = scratch_root(clinvk_home)
    assert first.parent == second.parent == root
    assert str(first) != os.getcwd()
    # The fake leaves it untouched: it waits, empty, for the next run (tests/test_spare_dirs.py: a run
    # that writes into it gets its dir removed, and every run finds its own empty).
    assert set(map(str, root.iterdir())) <= SPARES.held() and not any(first.iterdir())
    assert oct(root.stat().st_mode & 0o777) == "0o700"


def test_a_session_keeps_its_scratch_dir_until_it_is_deleted(make_app, fake_clis, clinvk_home):
    client = make_app().test_client()
    first = run(client)
    second = run(client, session_id=first["session_id"])
    assert second["session_id"] == first["session_id"]
    cwds = [c["cwd"] for c in fake_clis.calls()]
    assert cwds[0] == cwds[1] and Path(cwds[0]).parent == scratch_root(clinvk_home) and Path(cwds[0]).is_dir()
    assert client.delete(f"/api/v1/sessions/{first['session_id']}").status_code == 200
    assert not Path(cwds[0]).exists()


def test_retention_prunes_scratch_dirs_no_session_uses(make_app, fake_clis, clinvk_home):
    app = make_app()
    run(app.test_client())
    kept = Path(fake_clis.last()["cwd"])
    orphan = scratch_root(clinvk_home) / "run-orphan"
    orphan.mkdir()
    old = 1_000_000_000
    os.utime(orphan, (old, old))
    fresh = scratch_root(clinvk_home) / "run-in-flight"
    fresh.mkdir()  # a run of another worker in progress: too young to prune
    assert prune_scratch(clinvk_home, app.extensions["clinvk.service"].store) == 1
    assert kept.is_dir() and fresh.is_dir() and not orphan.exists()


# ---------------------------------------------------------------------------------- blocked list

@pytest.fixture
def user_home(tmp_path, monkeypatch):
    home = tmp_path / "service-user"
    for name in (".ssh", ".config", ".claude", ".claude-work", ".codex", ".gemini", ".gnupg", "projects"):
        (home / name).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.mark.parametrize("inside", [".ssh", ".config", ".claude", ".claude-work", ".codex", ".gemini", ".gnupg"])
def test_credential_dirs_of_the_service_user_are_blocked_by_default(make_app, fake_clis, user_home, inside):
    client = make_app().test_client()
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi",
                                                   "workdir": str(user_home / inside)})
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "body.workdir"
    assert fake_clis.calls() == []


@pytest.mark.parametrize("path", ["/proc", "/proc/self", "/sys", "/dev", "/var/lib", "/var/lib/dpkg"])
def test_system_state_is_blocked_by_default(client, fake_clis, path):
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "workdir": path})
    assert response.status_code == 400
    assert fake_clis.calls() == []


def test_the_state_dir_is_blocked(make_app, fake_clis, clinvk_home):
    client = make_app(server={"blocked_workdir_prefixes": ["/nothing"]}).test_client()
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "workdir": str(clinvk_home)})
    assert response.status_code == 400
    assert fake_clis.calls() == []


def test_the_default_list_names_them():
    for entry in ("/proc", "/sys", "/dev", "/var/lib", "~/.ssh", "~/.config", "~/.claude*", "~/.codex",
                  "~/.gemini", "~/.gnupg"):
        assert entry in DEFAULT_BLOCKED_WORKDIR_PREFIXES


def test_blocked_and_missing_paths_answer_alike(make_app, fake_clis, tmp_path, user_home):
    client = make_app(server={"allowed_workdir_prefixes": [str(user_home / "projects")]}).test_client()
    (tmp_path / "a-file").write_text("x")
    probes = [str(user_home / ".ssh"), str(user_home / ".ssh" / "missing"), "/etc/shadow", "/etc",
              str(tmp_path / "missing"), str(tmp_path / "a-file"), str(user_home / "projects" / "missing"),
              "/root/.ssh"]
    messages = set()
    for path in probes:
        response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "workdir": path})
        assert response.status_code == 400, (path, response.data)
        messages.add(re.sub(re.escape(path), "<path>", response.get_json()["message"]))
    assert len(messages) == 1, messages
    assert fake_clis.calls() == []
