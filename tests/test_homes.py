"""Per-session CLI homes: seeded from the operator's home, login files linked or copied back,
created on the first turn, reused, deleted with the session and by retention; throwaway homes go."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from clinvk.cli import cli
from clinvk.homes import CliHomes
from clinvk.server import create_app
from clinvk.spare_dirs import SPARES
from tests.helpers import wait_for


@pytest.fixture
def operator(tmp_path):
    """An operator's home with config, caches and login files for all three CLIs."""
    home = tmp_path / "operator"
    claude, codex, gemini = home / ".claude", home / ".codex", home / ".gemini"
    for d in (claude / "projects" / "x", claude / "commands", codex / "sessions", codex / "skills" / ".system",
              codex / "skills" / "mine", gemini / "tmp" / "p" / "chats"):
        d.mkdir(parents=True)
    (claude / "settings.json").write_text('{"model": "opus"}')
    (claude / "commands" / "hello.md").write_text("hi")
    (claude / "projects" / "x" / "old.jsonl").write_text("someone's transcript")
    (claude / ".credentials.json").write_text('{"token": "old"}')
    (home / ".claude.json").write_text('{"hasCompletedOnboarding": true}')
    (codex / "config.toml").write_text('model_provider = "mine"\n')
    (codex / "auth.json").write_text('{"tokens": "old"}')
    (codex / "sessions" / "rollout.jsonl").write_text("someone's transcript")
    (codex / "skills" / ".system" / "bundled.md").write_text("rebuilt by codex")
    (codex / "skills" / "mine" / "SKILL.md").write_text("operator's skill")
    (gemini / "settings.json").write_text('{"security": {}}')
    (gemini / "oauth_creds.json").write_text('{"refresh_token": "old"}')
    (gemini / "tmp" / "p" / "chats" / "session-1.json").write_text("someone's transcript")
    return home


def test_a_new_home_gets_the_operators_config_but_not_its_state(tmp_path, operator):
    homes = CliHomes(tmp_path / "state")
    env = {"HOME": str(operator)}
    claude = homes.open("claude", "a" * 32, env, sandboxed=False)
    assert claude.path == tmp_path / "state" / "homes" / ("a" * 32)
    state = claude.path / ".claude"
    assert json.loads((state / "settings.json").read_text()) == {"model": "opus"}
    assert (state / "commands" / "hello.md").exists() and (state / ".claude.json").exists()
    assert not (state / "projects").exists()
    assert claude.env() == {"HOME": str(claude.path), "TMPDIR": str(claude.path / "tmp"),
                            "CLAUDE_CONFIG_DIR": str(state), "CLAUDE_CODE_TMPDIR": str(claude.path / "tmp")}
    codex = homes.open("codex", "b" * 32, {"HOME": str(operator), "CODEX_HOME": str(operator / ".codex")},
                       sandboxed=False)
    assert (codex.state_dir / "config.toml").read_text() == 'model_provider = "mine"\n'
    assert (codex.state_dir / "skills" / "mine" / "SKILL.md").exists()
    assert not (codex.state_dir / "skills" / ".system").exists() and not (codex.state_dir / "sessions").exists()
    assert codex.env()["CODEX_HOME"] == str(codex.state_dir)
    gemini = homes.open("gemini", "c" * 32, env, sandboxed=False)
    assert gemini.env()["GEMINI_CLI_HOME"] == str(gemini.path)
    assert (gemini.path / ".gemini" / "settings.json").exists() and not (gemini.path / ".gemini" / "tmp").exists()
    assert oct(claude.path.stat().st_mode & 0o777) == "0o700"


def test_config_is_copied_once_and_the_home_reused(tmp_path, operator):
    homes = CliHomes(tmp_path / "state")
    env = {"HOME": str(operator)}
    home = homes.open("claude", "a" * 32, env, sandboxed=False)
    (home.state_dir / "projects").mkdir()
    (home.state_dir / "projects" / "mine.jsonl").write_text("this session's transcript")
    (home.state_dir / "settings.json").write_text('{"changed": "by the session"}')
    again = homes.open("claude", "a" * 32, env, sandboxed=False)
    assert again.path == home.path and (again.state_dir / "projects" / "mine.jsonl").exists()
    assert json.loads((again.state_dir / "settings.json").read_text()) == {"changed": "by the session"}


def test_login_files_follow_how_each_cli_refreshes(tmp_path, operator):
    homes = CliHomes(tmp_path / "state")
    env = {"HOME": str(operator)}
    # gemini rewrites in place through a symlink: linked, and bound read-write when sandboxed
    gemini = homes.open("gemini", "c" * 32, env, sandboxed=False)
    creds = gemini.state_dir / "oauth_creds.json"
    assert creds.is_symlink() and os.readlink(creds) == str(operator / ".gemini" / "oauth_creds.json")
    assert homes.open("gemini", "c" * 32, env, sandboxed=True).binds == [str(operator / ".gemini" / "oauth_creds.json")]
    # codex renames over the link's target: linked, but copied (and copied back) inside the sandbox
    assert homes.open("codex", "b" * 32, env, sandboxed=False).state_dir.joinpath("auth.json").is_symlink()
    codex = homes.open("codex", "b" * 32, env, sandboxed=True)
    auth = codex.state_dir / "auth.json"
    assert not auth.is_symlink() and auth.read_text() == '{"tokens": "old"}' and codex.binds == []
    auth.write_text('{"tokens": "refreshed"}')
    codex.release(homes.locks)
    assert (operator / ".codex" / "auth.json").read_text() == '{"tokens": "refreshed"}'
    # claude renames over the link itself: always a copy, copied back only when the run changed it
    claude = homes.open("claude", "a" * 32, env, sandboxed=False)
    session_creds = claude.state_dir / ".credentials.json"
    assert not session_creds.is_symlink() and session_creds.read_text() == '{"token": "old"}'
    (operator / ".claude" / ".credentials.json").write_text('{"token": "newer, from another session"}')
    claude.release(homes.locks)  # unchanged by this run: the operator's newer file stays
    assert (operator / ".claude" / ".credentials.json").read_text() == '{"token": "newer, from another session"}'
    claude = homes.open("claude", "a" * 32, env, sandboxed=False)
    assert session_creds.read_text() == '{"token": "newer, from another session"}'  # copied in before each run
    tmp = session_creds.with_name("tmp-write")
    tmp.write_text('{"token": "refreshed"}')
    os.replace(tmp, session_creds)  # what claude does
    claude.release(homes.locks)
    assert (operator / ".claude" / ".credentials.json").read_text() == '{"token": "refreshed"}'
    assert oct((operator / ".claude" / ".credentials.json").stat().st_mode & 0o777) == "0o600"



@pytest.mark.parametrize("backend, name, sandboxed", [("claude", ".credentials.json", False),
                                                      ("claude", ".credentials.json", True),
                                                      ("codex", "auth.json", True)])
def test_a_login_file_the_run_made_a_symlink_is_not_copied_back(tmp_path, operator, backend, name, sandboxed):
    """An agent that turns its copy of the login file into a symlink (a link's text needs no access to its
    target, not even inside the sandbox) must not get the target copied into the operator's file, and so
    into every later run's home: the session database, another tenant's files."""
    homes = CliHomes(tmp_path / "state")
    home = homes.open(backend, "d" * 32, {"HOME": str(operator)}, sandboxed=sandboxed)
    secret = tmp_path / "state" / "sessions.db"
    secret.write_text("every tenant's sessions")
    copy = home.state_dir / name
    before = (operator / f".{backend}" / name).read_text()
    copy.unlink()
    copy.symlink_to(secret)
    home.release(homes.locks)
    assert (operator / f".{backend}" / name).read_text() == before


def test_throwaway_homes_go_after_the_run(tmp_path, operator):
    homes = CliHomes(tmp_path / "state")
    home = homes.open("codex", None, {"HOME": str(operator)}, sandboxed=False)
    assert home.path.parent == tmp_path / "state" / "tmp-homes" and (home.state_dir / "config.toml").exists()
    home.release(homes.locks)
    assert not home.path.exists()


def test_a_throwaway_home_the_cli_wrote_into_goes_an_untouched_one_is_the_next_ones(tmp_path):
    homes = CliHomes(tmp_path / "state")
    env = {"HOME": str(tmp_path / "nobody")}
    used = homes.open("claude", None, env, sandboxed=False)
    (used.state_dir / "projects" / "p").mkdir(parents=True)
    (used.state_dir / "projects" / "p" / "t.jsonl").write_text("transcript")
    (used.path / "tmp" / "scratch").write_text("x")
    used.release(homes.locks)
    assert not used.path.exists()
    untouched = homes.open("gemini", None, env, sandboxed=False)
    untouched.release(homes.locks)
    again = homes.open("gemini", None, env, sandboxed=False)
    assert again.path == untouched.path and sorted(p.name for p in again.path.iterdir()) == [".gemini", "tmp"]
    assert homes.open("gemini", None, env, sandboxed=False).path != again.path  # in use: a new one
    assert homes.open("codex", None, env, sandboxed=False).path != again.path  # another backend's layout


def test_new_homes_see_the_operators_config_as_it_is_now(tmp_path, operator):
    """The operator's directory is listed once and listed again when it changes: a file added, one
    removed, or a symlinked one whose target changed, shows in the next home."""
    homes = CliHomes(tmp_path / "state")
    env = {"HOME": str(operator)}
    claude = operator / ".claude"
    settled = claude.stat().st_mtime - 5  # as if the directory had last changed a while ago
    os.utime(claude, (settled, settled))
    first = homes.open("claude", None, env, sandboxed=False)
    assert (first.state_dir / "settings.json").exists() and not (first.state_dir / "CLAUDE.md").exists()
    (claude / "CLAUDE.md").write_text("be brief")
    (claude / "settings.json").unlink()
    target = tmp_path / "agents-v1"
    target.mkdir()
    (target / "a.md").write_text("agent")
    (claude / "agents").symlink_to(target)
    second = homes.open("claude", None, env, sandboxed=False)
    assert (second.state_dir / "CLAUDE.md").read_text() == "be brief"
    assert not (second.state_dir / "settings.json").exists()
    assert (second.state_dir / "agents" / "a.md").read_text() == "agent"
    os.utime(claude, (settled, settled))  # settled again, then only the symlink's target changes
    homes.open("claude", None, env, sandboxed=False)
    (target / "a.md").unlink()
    target.rmdir()
    target.write_text("now a file")
    third = homes.open("claude", None, env, sandboxed=False)
    assert (third.state_dir / "agents").read_text() == "now a file"
    (operator / ".claude.json").unlink()
    assert not (homes.open("claude", None, env, sandboxed=False).state_dir / ".claude.json").exists()
    # A change in the same timestamp tick as a listing leaves the mtime as it was: a listing taken
    # right after the directory changed is not trusted later.
    (claude / "skills").mkdir()
    changed = claude.stat().st_mtime_ns
    homes.open("claude", None, env, sandboxed=False)
    (claude / "output-styles").mkdir()
    os.utime(claude, ns=(changed, changed))
    assert (homes.open("claude", None, env, sandboxed=False).state_dir / "output-styles").is_dir()


def test_sessions_from_before_homes_keep_the_operators_home_without_the_sandbox(tmp_path, operator):
    homes = CliHomes(tmp_path / "state")
    assert homes.open("claude", "d" * 32, {"HOME": str(operator)}, sandboxed=False, legacy=True) is None
    assert homes.open("claude", "d" * 32, {"HOME": str(operator)}, sandboxed=True, legacy=True) is not None


# ------------------------------------------------------------------------------- through the API

def in_use(tmp_homes: Path) -> list[Path]:
    """Throwaway homes but the spare ones."""
    return [p for p in tmp_homes.iterdir() if str(p) not in SPARES.held()]


def homes_of(clinvk_home: Path) -> list[str]:
    root = clinvk_home / "homes"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_sessions_home_lives_as_long_as_the_session(client, clinvk_home, fake_clis):
    sid = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json["session_id"]
    assert homes_of(clinvk_home) == [sid]
    assert client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "two"}).status_code == 200
    assert homes_of(clinvk_home) == [sid]  # reused, not a second one
    assert client.delete(f"/api/v1/sessions/{sid}").status_code == 200
    assert homes_of(clinvk_home) == []


def test_ephemeral_and_compat_runs_leave_no_home(make_app, clinvk_home, fake_clis):
    # No warm pool here: its standby CLIs wait in throwaway homes of their own (next test).
    client = make_app(run={"warm_pool": {"enabled": False}}).test_client()
    for backend in ("claude", "codex", "gemini"):
        assert client.post("/api/v1/prompt", json={"backend": backend, "prompt": "x", "ephemeral": True}).json[
            "exit_code"] == 0
    assert client.post("/openai/v1/chat/completions",
                       json={"model": "gemini", "messages": [{"role": "user", "content": "y"}]}).status_code == 200
    stream = client.post("/anthropic/v1/messages", json={"model": "claude", "max_tokens": 5, "stream": True,
                                                         "messages": [{"role": "user", "content": "z"}]})
    assert stream.status_code == 200 and stream.get_data()
    # What the runs left untouched waits for the next one (tests/test_spare_dirs.py), empty.
    assert homes_of(clinvk_home) == [] and set(map(str, (clinvk_home / "tmp-homes").iterdir())) <= SPARES.held()


def test_retention_and_the_command_line_delete_homes(make_config, clinvk_home, fake_clis, monkeypatch):
    client = create_app(make_config()).test_client()
    keep, gone = (client.post("/api/v1/prompt", json={"backend": "codex", "prompt": p}).json["session_id"]
                  for p in ("keep", "gone"))
    (clinvk_home / "homes" / ("e" * 32)).mkdir()  # a home whose session is gone already
    monkeypatch.setenv("CLINVK_HOME", str(clinvk_home))
    monkeypatch.delenv("CLINVK_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["sessions", "delete", gone[:8]])
    assert result.exit_code == 0, result.output
    assert homes_of(clinvk_home) == sorted([keep, "e" * 32])
    result = CliRunner().invoke(cli, ["sessions", "clean", "--older-than", "30d"])
    assert result.exit_code == 0, result.output
    assert homes_of(clinvk_home) == [keep]  # the orphan went, the live session's home stayed


def test_a_warm_cli_has_a_home_of_its_own_that_goes_with_it(make_app, clinvk_home, fake_clis):
    app = make_app()
    client = app.test_client()
    pool = app.extensions["clinvk.service"].warm_pool
    tmp_homes = clinvk_home / "tmp-homes"
    answers = [client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x", "ephemeral": True}).json
               for _ in range(2)]
    assert [a["exit_code"] for a in answers] == [0, 0]
    assert wait_for(lambda: pool.counts["hit"] == 1 and pool.idle() == 1, 30), pool.counts
    # Left: the waiting process's own throwaway home; the two runs' homes go when their CLIs end (or,
    # untouched, wait empty for the next run: tests/test_spare_dirs.py).
    assert wait_for(lambda: len(in_use(tmp_homes)) == 1, 30), in_use(tmp_homes)
    pool.close()
    assert wait_for(lambda: not in_use(tmp_homes), 30), in_use(tmp_homes)
