"""Archives of a session's local directories: packing (caches and logins left out, links kept),
restoring, and the PostgreSQL store keeping only the newest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clinvk.sessions import SqliteSessionStore
from clinvk.sessions import archive
from clinvk.scratch import is_scratch
from clinvk.sessions.postgresql import PostgresSessionStore
from tests.services import postgres_db, postgres_server  # noqa: F401 (fixtures)


def make_codex_home(home):
    root = home / ".codex"
    (root / "sessions/2026/01/01").mkdir(parents=True)
    (root / "sessions/2026/01/01/rollout-1.jsonl").write_text('{"turn": 1}\n')
    (root / "config.toml").write_text("model = 'x'\n")
    (root / "skills/.system/bundled").mkdir(parents=True)
    (root / "skills/.system/bundled/SKILL.md").write_text("rebuilt by codex" * 100)
    (root / "skills/mine").mkdir(parents=True)
    (root / "skills/mine/SKILL.md").write_text("the operator's own skill")
    (root / "logs_2.sqlite").write_bytes(b"log" * 1000)
    (root / "auth.json").write_text('{"token": "secret"}')
    (root / "linked.json").symlink_to("/etc/hostname")
    (home / "tmp").mkdir()
    (home / "tmp" / "scratch").write_text("x")
    return home


def test_pack_leaves_out_caches_and_logins_and_keeps_links(tmp_path):
    home = make_codex_home(tmp_path / "home")
    data = archive.pack({"home": home}, archive.EXCLUDED["codex"])
    target = tmp_path / "elsewhere" / "home"
    target.parent.mkdir()
    archive.unpack(data, {"home": target})
    files = sorted(str(p.relative_to(target / ".codex")) for p in (target / ".codex").rglob("*"))
    assert "sessions/2026/01/01/rollout-1.jsonl" in files and "config.toml" in files
    assert "skills/mine/SKILL.md" in files
    assert not any(f.startswith("skills/.system") or f.startswith("logs_") or f == "auth.json" for f in files)
    assert not (target / "tmp").exists()
    assert os.readlink(target / ".codex/linked.json") == "/etc/hostname"
    assert (target / ".codex/sessions/2026/01/01/rollout-1.jsonl").read_text() == '{"turn": 1}\n'


def test_unpack_replaces_the_old_copy_and_leaves_absent_parts(tmp_path):
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    (home / "a").write_text("1")
    data = archive.pack({"home": home, "workdir": tmp_path / "missing"})
    (home / "a").write_text("changed")
    (home / "stale").write_text("from a later turn elsewhere")
    workdir.mkdir()
    (workdir / "keep").write_text("x")
    archive.unpack(data, {"home": home, "workdir": workdir})
    assert sorted(p.name for p in home.iterdir()) == ["a"] and (home / "a").read_text() == "1"
    assert (workdir / "keep").read_text() == "x"


def test_unpack_refuses_members_outside_the_target(tmp_path):
    import io
    import tarfile
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("home/../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        archive.unpack(buffer.getvalue(), {"home": tmp_path / "t" / "home"})
    assert not (tmp_path / "escaped").exists()


def test_postgres_keeps_the_newest_and_restores_a_stale_copy(postgres_db, tmp_path):
    store = PostgresSessionStore(postgres_db)
    session = store.create(backend="codex")
    host_a, host_b = tmp_path / "a" / "home", tmp_path / "b" / "home"
    make_codex_home(host_a)
    assert archive.save(store, session.id, 1, {"home": host_a}, "codex") > 0
    assert archive.local_turn(host_a) == 1
    (host_a / "turn2.txt").write_text("2")
    archive.save(store, session.id, 2, {"home": host_a}, "codex")
    assert store.save_archive(session.id, 1, b"older") is False  # a late save of an older turn loses
    assert store.archive_turn(session.id) == 2

    assert archive.restore_if_stale(store, session.id, {"home": host_b}) == 2  # missing locally
    assert (host_b / "turn2.txt").read_text() == "2" and archive.local_turn(host_b) == 2
    assert archive.restore_if_stale(store, session.id, {"home": host_b}) is None  # current: nothing read
    assert archive.restore_if_stale(store, session.id, {"home": host_a}) is None

    store.delete(session.id)
    assert store.archive_turn(session.id) is None  # deleted with its session
    assert store.save_archive(session.id, 3, b"x") is False
    store.close()


def test_sqlite_keeps_homes_local(tmp_path):
    store = SqliteSessionStore(tmp_path / "s.db")
    session = store.create(backend="claude")
    home = tmp_path / "home"
    home.mkdir()
    assert archive.save(store, session.id, 1, {"home": home}, "claude") is None
    assert archive.restore_if_stale(store, session.id, {"home": home}) is None
    assert not (home / archive.MARKER).exists()


def test_a_turn_without_the_local_copy_starts_from_the_last_turns_home_and_scratch_dir(
        make_app, fake_clis, postgres_db):
    """As on a host that never ran this session (same state directory path, nothing in it yet)."""
    app = make_app(session={"store": postgres_db})
    service, client = app.extensions["clinvk.service"], app.test_client()
    sid = client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "one"}).json["session_id"]
    home, workdir = service.homes.path(sid), Path(service.store.get(sid).working_dir)
    assert is_scratch(service.config.home, str(workdir)) and service.store.archive_turn(sid) == 1
    (home / ".codex" / "notes.md").write_text("kept by the CLI")
    (workdir / "main.py").write_text("print('made by the agent')")
    second = client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "two"})
    assert second.status_code == 200 and service.store.archive_turn(sid) == 2
    shutil.rmtree(home)
    shutil.rmtree(workdir)
    third = client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "three"})
    assert third.status_code == 200 and third.json["output"] == "echo: three"
    assert (home / ".codex" / "notes.md").read_text() == "kept by the CLI"
    assert (workdir / "main.py").read_text() == "print('made by the agent')"
    assert fake_clis.last()["cwd"] == str(workdir)
    assert archive.local_turn(home) == archive.local_turn(workdir) == service.store.archive_turn(sid) == 3


def test_a_stale_local_copy_is_replaced_before_the_turn(make_app, fake_clis, postgres_db):
    app = make_app(session={"store": postgres_db})
    service, client = app.extensions["clinvk.service"], app.test_client()
    sid = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json["session_id"]
    home = service.homes.path(sid)
    (home / "later.txt").write_text("turn 2, run on another host")
    client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "two"})
    (home / "later.txt").write_text("this host's copy from turn 1")
    archive.mark(home, 1)  # this host last ran turn 1
    client.post("/api/v1/prompt", json={"session_id": sid, "prompt": "three"})
    assert (home / "later.txt").read_text() == "turn 2, run on another host"
