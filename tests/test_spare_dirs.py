"""Spare directories (clinvk.spare_dirs): an ephemeral run's throwaway home and scratch workdir go to
the next ephemeral run only when the run left them exactly as it got them; nothing of one run reaches
the next."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from clinvk.spare_dirs import SPARES, SpareDirs


def made(root: Path, name: str = "d", subdirs: tuple[str, ...] = ("tmp", ".claude")) -> Path:
    """A directory as clinvk makes a throwaway home: 0700, with empty 0700 subdirectories."""
    root.mkdir(exist_ok=True)
    path = root / name
    path.mkdir(mode=0o700)
    for sub in subdirs:
        (path / sub).mkdir(mode=0o700)
    return path


def test_an_untouched_directory_goes_to_the_next_taker(tmp_path):
    spares = SpareDirs()
    path = made(tmp_path)
    assert spares.take("home") is None
    assert spares.give_back("home", str(path), ("tmp", ".claude"))
    assert spares.held() == {str(path)}
    assert spares.take("other kind") is None
    assert spares.take("home") == (str(path), ("tmp", ".claude"))
    assert spares.take("home") is None


def _file_in_top(path: Path) -> None:
    (path / "note.txt").write_text("x")


def _file_in_subdir(path: Path) -> None:
    (path / ".claude" / "state.json").write_text("{}")


def _empty_file_in_subdir(path: Path) -> None:
    (path / "tmp" / "lock").touch()


def _extra_subdir(path: Path) -> None:
    (path / "projects").mkdir(mode=0o700)


def _nested_subdir(path: Path) -> None:
    (path / ".claude" / "projects").mkdir(mode=0o700)


def _subdir_made_a_symlink(path: Path) -> None:
    elsewhere = path.parent / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (path / "tmp").rmdir()
    (path / "tmp").symlink_to(elsewhere)


def _subdir_removed(path: Path) -> None:
    (path / "tmp").rmdir()


def _top_opened_up(path: Path) -> None:
    path.chmod(0o755)


def _subdir_opened_up(path: Path) -> None:
    (path / "tmp").chmod(0o770)


def _attribute_on_subdir(path: Path) -> None:
    os.setxattr(path / "tmp", "user.note", b"from the previous run")


def _fifo_in_subdir(path: Path) -> None:
    os.mkfifo(path / "tmp" / "pipe")


CHANGES = [_file_in_top, _file_in_subdir, _empty_file_in_subdir, _extra_subdir, _nested_subdir, _subdir_made_a_symlink,
           _subdir_removed, _top_opened_up, _subdir_opened_up, _attribute_on_subdir, _fifo_in_subdir]


@pytest.mark.parametrize("change", CHANGES)
def test_a_directory_a_run_changed_in_any_way_is_not_kept(tmp_path, change):
    spares = SpareDirs()
    path = made(tmp_path)
    change(path)
    assert not spares.give_back("home", str(path), ("tmp", ".claude"))
    assert spares.take("home") is None and spares.held() == set()


@pytest.mark.parametrize("change", CHANGES)
def test_a_directory_found_untouched_long_enough_is_checked_by_its_ctime_which_any_change_moves(tmp_path, change,
                                                                                                monkeypatch):
    """Found untouched twice, settle_secs apart, with the same ctimes: from then on an lstat of each
    directory replaces the listing, and still nothing a run changes gets through."""
    spares = SpareDirs(settle_secs=0)
    path = made(tmp_path)
    time.sleep(0.05)  # past any timestamp granularity of the file system since the directories were made
    for _ in range(2):  # two full checks with the same stamps: settled
        assert spares.give_back("home", str(path), ("tmp", ".claude"))
        assert spares.take("home") == (str(path), ("tmp", ".claude"))
    listed = []
    monkeypatch.setattr("clinvk.spare_dirs.untouched", lambda *a: listed.append(a))
    assert spares.give_back("home", str(path), ("tmp", ".claude")) and listed == []  # the lstat path
    assert spares.take("home") == (str(path), ("tmp", ".claude"))
    monkeypatch.undo()
    change(path)
    assert not spares.give_back("home", str(path), ("tmp", ".claude"))
    assert spares.take("home") is None


def test_old_directories_are_not_kept_nor_handed_out(tmp_path):
    """The retention sweeps remove throwaway homes and scratch dirs a day old by their mtime, which an
    untouched directory keeps: a spare never gets near that age."""
    spares = SpareDirs(max_age_secs=3600)
    old = made(tmp_path, "old", ())
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    assert not spares.give_back("scratch", str(old))
    aging = made(tmp_path, "aging", ())
    assert spares.give_back("scratch", str(aging))
    spares.max_age_secs = 0  # it aged in the list
    assert spares.take("scratch") is None
    assert not aging.exists()


def test_at_most_limit_are_kept(tmp_path):
    spares = SpareDirs(limit=2)
    paths = [made(tmp_path, f"d{i}", ()) for i in range(3)]
    assert [spares.give_back("scratch", str(p)) for p in paths] == [True, True, False]


def test_clear_removes_them_and_a_forked_child_does_not_inherit_them(tmp_path):
    kind = ("test", str(tmp_path))
    path = made(tmp_path)
    assert SPARES.give_back(kind, str(path), ("tmp", ".claude"))
    pid = os.fork()
    if pid == 0:  # the child: the spare is its parent's
        os._exit(0 if SPARES.take(kind) is None else 1)
    assert os.waitpid(pid, 0)[1] == 0
    SPARES.clear()
    assert not path.exists() and SPARES.take(kind) is None


# ------------------------------------------------------------------------------- through the API

SPY = """#!/bin/sh
# Records what the run finds in its working directory and home, optionally leaves something behind,
# and answers like claude -p --output-format json.
cat > /dev/null
printf '{"cwd": "%s", "cwd_entries": "%s", "home": "%s", "home_entries": "%s"}\\n' \\
  "$PWD" "$(ls -A | tr '\\n' ' ')" "$HOME" "$(cd "$HOME" && find . -mindepth 1 | sort | tr '\\n' ' ')" >> "$FAKE_SPY_LOG"
if [ -n "$FAKE_SPY_WRITE" ]; then
  echo "$FAKE_SPY_WRITE" > left-behind.txt
  echo "$FAKE_SPY_WRITE" > "$HOME/.claude/state.json"
  echo "$FAKE_SPY_WRITE" > "$TMPDIR/scratch"
fi
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s-1"}'
"""


@pytest.fixture
def spy(tmp_path, monkeypatch):
    script = tmp_path / "spy-claude"
    script.write_text(SPY)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "spy.log"
    monkeypatch.setenv("FAKE_SPY_LOG", str(log))
    return script, log


def runs(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("write", ["", "secret of the first run"])
def test_every_ephemeral_run_starts_in_an_empty_home_and_workdir(make_app, spy, monkeypatch, write):
    """Whether the runs leave something behind (their directories go) or nothing (they go to the next
    run), each run finds its working directory empty and its home as clinvk makes it."""
    script, log = spy
    monkeypatch.setenv("FAKE_SPY_WRITE", write)
    client = make_app(backends={"claude": {"command": str(script)}},
                      run={"warm_pool": {"enabled": False}}).test_client()
    for _ in range(3):
        assert client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x", "ephemeral": True}).json[
            "output"] == "ok"
        assert client.post("/openai/v1/chat/completions", json={
            "model": "claude", "messages": [{"role": "user", "content": "y"}]}).status_code == 200
    seen = runs(log)
    assert len(seen) == 6
    for run in seen:
        assert run["cwd_entries"] == "" and run["home_entries"].split() == ["./.claude", "./tmp"], run
    cwds, homes = {run["cwd"] for run in seen}, {run["home"] for run in seen}
    if write:  # each run's directories went with it
        assert len(cwds) == len(homes) == 6
        assert not any(Path(p).exists() for p in cwds | homes)
    else:  # the untouched ones were handed on
        assert len(cwds) == len(homes) == 1
        assert cwds | homes <= SPARES.held()
