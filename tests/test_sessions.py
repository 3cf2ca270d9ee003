"""Tests of the session stores (clinvk.sessions): the contract runs against SQLite and a real
PostgreSQL (tests/services.py); file modes, query plans and processes sharing a file are SQLite's own."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from clinvk.sessions import postgresql as postgres_mod
from clinvk.sessions import sqlite as sessions_mod
from clinvk.events import TokenUsage
from clinvk.sessions import (
    STATUSES,
    AmbiguousSession,
    InvalidSessionId,
    Session,
    SessionNotFound,
    SqliteSessionStore as SessionStore,
)
from clinvk.sessions.postgresql import PostgresSessionStore
from tests.helpers import run_processes
from tests.services import postgres_db, postgres_server  # noqa: F401 (fixtures)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock(monkeypatch):
    """A controllable clock: every call returns the current value, `clock.tick()` advances it."""

    class Clock:
        now = T0

        def tick(self, **kw):
            self.now += timedelta(**kw) if kw else timedelta(seconds=1)
            return self.now

    c = Clock()
    monkeypatch.setattr(sessions_mod, "utc_now", lambda: c.now)
    monkeypatch.setattr(postgres_mod, "utc_now", lambda: c.now)
    return c


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """Each contract test runs once per store implementation."""
    if request.param == "sqlite":
        s = SessionStore(tmp_path / "home" / "sessions.db")
    else:
        s = PostgresSessionStore(request.getfixturevalue("postgres_db"))
    yield s
    s.close()


def _make(store, clock, n, **kw):
    out = []
    for _ in range(n):
        clock.tick()
        out.append(store.create(**kw))
    return out


# --- CRUD and files ---------------------------------------------------------------------------------


def test_create_and_get(store):
    s = store.create(backend="claude", working_dir="/w", model="opus",
                     initial_prompt="  fix the bug\nplease ", tags=["api", "x", "api"], metadata={"k": "v"})
    assert len(s.id) == 32 and all(c in "0123456789abcdef" for c in s.id)
    assert s.status == "active" and s.turn_count == 0 and s.token_usage == TokenUsage()
    assert s.title == "fix the bug" and s.tags == ["api", "x"]
    assert s.created_at == s.last_used and s.created_at.tzinfo is not None
    got = store.get(s.id)
    assert got == s
    assert store.count() == 1


def test_file_and_dir_modes(tmp_path):
    path = tmp_path / "home" / "sessions.db"
    SessionStore(path).create(backend="codex")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == sessions_mod.SCHEMA_VERSION
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"sessions_last_used", "sessions_backend_last_used", "sessions_status_last_used"} <= indexes


def test_existing_loose_file_is_tightened(tmp_path):
    path = tmp_path / "sessions.db"
    path.touch()
    os.chmod(path, 0o644)
    SessionStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reopen_is_idempotent_and_persistent(tmp_path):
    path = tmp_path / "sessions.db"
    a = SessionStore(path)
    s = a.create(backend="gemini", initial_prompt="hello", metadata={"a": "b"})
    a.record_turn(s.id, status="completed", backend_session_id="bs-1", token_usage=TokenUsage(3, 4, 1, 2))
    b = SessionStore(path)
    got = b.get(s.id)
    assert got.backend_session_id == "bs-1" and got.turn_count == 1
    assert got.token_usage == TokenUsage(3, 4, 1, 2) and got.metadata == {"a": "b"}
    assert b.count() == 1


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "sessions.db"
    SessionStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SessionStore(path)


def test_create_validation(store):
    with pytest.raises(ValueError):
        store.create(backend="")
    with pytest.raises(ValueError):
        store.create(backend="claude", tags=[1])
    with pytest.raises(ValueError):
        store.create(backend="claude", metadata={"k": 1})


def test_delete(store):
    s = store.create(backend="claude")
    other = store.create(backend="claude")
    deleted = store.delete(s.id[:10])
    assert deleted.id == s.id
    with pytest.raises(SessionNotFound):
        store.get(s.id)
    with pytest.raises(SessionNotFound):
        store.delete(s.id)
    assert store.count() == 1 and store.get(other.id).id == other.id


# --- titles, display names, to_dict -----------------------------------------------------------------


def test_title_and_display_name(store):
    long = "word " * 30
    s = store.create(backend="claude", initial_prompt="\n\n" + long + "\nsecond line")
    assert len(s.title) == 60 and s.title.endswith("…") and "\n" not in s.title
    assert s.display_name == s.title
    exact = "x" * 60
    assert store.create(backend="claude", initial_prompt=exact).title == exact
    empty = store.create(backend="claude")
    assert empty.title == "" and empty.display_name == empty.id[:8]
    raw = Session(id="ab" * 16, backend="c", created_at=T0, last_used=T0, initial_prompt="y" * 80)
    assert raw.display_name == "y" * 49 + "…"


def test_to_dict_is_json_ready(store):
    s = store.create(backend="claude", initial_prompt="hi", tags=["t"], metadata={"m": "n"})
    d = s.to_dict()
    json.dumps(d)
    assert set(d) == {f for f in Session.__dataclass_fields__}
    assert d["token_usage"] == TokenUsage().to_dict()
    assert d["created_at"].endswith("Z")
    assert datetime.fromisoformat(d["created_at"].replace("Z", "+00:00")) == s.created_at


# --- prefix lookup ----------------------------------------------------------------------------------


def _insert_ids(store, ids):
    """Sessions with chosen ids, all with the same last_used, written past the store's API."""
    if isinstance(store, PostgresSessionStore):
        with store._connection() as conn:
            for i in ids:
                conn.execute("INSERT INTO sessions (id, backend, created_at, last_used) VALUES (%s, 'claude', %s, %s)",
                             (i, T0, T0))
        return
    conn = store._conn()
    for i in ids:
        conn.execute("INSERT INTO sessions (id, backend, created_at, last_used) VALUES (?, 'claude', ?, ?)",
                     (i, "2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z"))


def test_prefix_lookup(store):
    ids = ["abcdef01" + "0" * 24, "abcdef01" + "1" * 24, "abcdef012" + "0" * 23, "f" * 32]
    _insert_ids(store, ids)
    assert store.get("f" * 8).id == "f" * 32
    assert store.get("abcdef011").id == ids[1]
    assert store.get("abcdef012").id == ids[2]
    assert store.get(ids[0]).id == ids[0]
    with pytest.raises(AmbiguousSession) as e:
        store.get("abcdef01")
    assert str(e.value) == "ambiguous prefix 'abcdef01': matches 3 sessions"
    _insert_ids(store, ["99999999" + c * 24 for c in "0123"])
    with pytest.raises(AmbiguousSession, match="matches 4 sessions"):
        store.delete("99999999")
    assert store.count() == 8  # nothing deleted
    with pytest.raises(SessionNotFound) as e:
        store.get("abcdef02")
    assert str(e.value) == "no session found with id or prefix 'abcdef02'"
    assert isinstance(e.value, LookupError)


@pytest.mark.parametrize("prefix", ["f", "ffff", "fffffff"])
def test_prefixes_shorter_than_eight_find_nothing(store, prefix):
    _insert_ids(store, ["f" * 32])
    with pytest.raises(SessionNotFound, match="at least 8 characters"):
        store.get(prefix)
    with pytest.raises(SessionNotFound, match="at least 8 characters"):
        store.delete(prefix)
    assert store.count() == 1


def test_owner_scopes_every_lookup(store):
    mine, theirs = store.create(backend="claude", owner="alice"), store.create(backend="claude", owner="bob")
    for s in (mine, theirs):
        store.record_turn(s.id, status="completed", backend_session_id="b-" + s.owner)
    assert store.get(mine.id, owner="alice").owner == "alice"
    assert store.get(mine.id[:8], owner="alice").id == mine.id
    for lookup in (theirs.id, theirs.id[:8]):
        with pytest.raises(SessionNotFound) as e:
            store.get(lookup, owner="alice")
        assert str(e.value) == f"no session found with id or prefix {lookup!r}"  # as for an unknown id
        with pytest.raises(SessionNotFound):
            store.delete(lookup, owner="alice")
    assert [s.id for s in store.list(owner="alice")[0]] == [mine.id]
    assert store.list(owner="alice")[1] == 1 and store.list()[1] == 2
    assert store.latest_resumable(owner="alice").id == mine.id
    assert store.get(theirs.id).owner == "bob"  # no owner: everyone's (an admin)
    assert store.create(backend="gemini").owner == "local"


def test_owner_column_is_added_to_an_existing_database(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(sessions_mod._SCHEMA[0])
    conn.execute("INSERT INTO sessions (id, backend, created_at, last_used) VALUES (?, 'claude', ?, ?)",
                 ("a" * 32, "2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z"))
    conn.commit()
    conn.close()
    for _ in range(2):  # opening twice: the step is idempotent
        store = SessionStore(path)
        assert store.get("a" * 32).owner == "local"
        assert store.get("a" * 32, owner="local").id == "a" * 32
        store.close()


@pytest.mark.parametrize("bad", ["", "ABC", "xyz", "a" * 33, "ab/", "../x", " ab", 12, None])
def test_invalid_ids(store, bad):
    with pytest.raises(InvalidSessionId) as e:
        store.get(bad)
    assert isinstance(e.value, ValueError)
    assert "must be 1-32 lowercase hex characters" in str(e.value)
    with pytest.raises(InvalidSessionId):
        store.delete(bad)


def test_invalid_id_message(store):
    with pytest.raises(InvalidSessionId) as e:
        store.get("x")
    assert str(e.value) == "invalid session id 'x': must be 1-32 lowercase hex characters"


# --- record_turn and set_status ---------------------------------------------------------------------


def test_record_turn_accumulates(store, clock):
    s = store.create(backend="claude", model="opus")
    clock.tick()
    r1 = store.record_turn(s.id, status="completed", backend_session_id="sess-1",
                           token_usage=TokenUsage(10, 20, 5, 1))
    assert r1.turn_count == 1 and r1.last_used == clock.now and r1.backend_session_id == "sess-1"
    clock.tick()
    r2 = store.record_turn(s.id, status="error", token_usage=TokenUsage(1, 2, 3, 4), error_message="boom",
                           model="sonnet")
    assert r2.turn_count == 2 and r2.token_usage == TokenUsage(11, 22, 8, 5)
    assert r2.backend_session_id == "sess-1"  # not cleared when not given
    assert r2.status == "error" and r2.error_message == "boom" and r2.model == "sonnet"
    r3 = store.record_turn(s.id, status="completed", backend_session_id="", error_message="ignored")
    assert r3.turn_count == 3 and r3.error_message is None and r3.backend_session_id == "sess-1"
    assert r3.token_usage == TokenUsage(11, 22, 8, 5) and r3.model == "sonnet"
    assert store.get(s.id) == r3
    assert r3.created_at == s.created_at


def test_record_turn_errors(store):
    s = store.create(backend="claude")
    with pytest.raises(ValueError, match="invalid session status"):
        store.record_turn(s.id, status="done")
    with pytest.raises(SessionNotFound):
        store.record_turn("0" * 32, status="completed")
    with pytest.raises(InvalidSessionId):
        store.record_turn("nope", status="completed")
    assert store.get(s.id).turn_count == 0
    # the failed transaction was rolled back: the thread's connection still writes
    assert store.record_turn(s.id, status="completed").turn_count == 1
    assert store.delete(s.id).id == s.id


def test_set_status(store, clock):
    s = store.create(backend="claude")
    store.record_turn(s.id, status="error", error_message="bad")
    clock.tick()
    store.set_status(s.id, "active")
    got = store.get(s.id)
    assert got.status == "active" and got.last_used == clock.now and got.error_message is None
    assert got.turn_count == 1
    for status in STATUSES:
        store.set_status(s.id, status)
        assert store.get(s.id).status == status
    with pytest.raises(ValueError):
        store.set_status(s.id, "running")
    with pytest.raises(SessionNotFound):
        store.set_status("1" * 32, "active")


# --- list -------------------------------------------------------------------------------------------


def test_list_order_filters_pagination(store, clock):
    claude = _make(store, clock, 5, backend="claude")
    codex = _make(store, clock, 3, backend="codex")
    clock.tick()
    store.record_turn(claude[0].id, status="completed")  # now the most recent
    clock.tick()
    store.record_turn(codex[0].id, status="error", error_message="x")

    page, total = store.list()
    assert total == 8
    assert [s.id for s in page] == [codex[0].id, claude[0].id] + [s.id for s in reversed(codex[1:])] + [
        s.id for s in reversed(claude[1:])]
    page, total = store.list(backend="claude", limit=2, offset=1)
    assert total == 5 and [s.id for s in page] == [claude[4].id, claude[3].id]
    page, total = store.list(status="active")
    assert total == 6 and all(s.status == "active" for s in page)
    page, total = store.list(backend="codex", status="error")
    assert total == 1 and page[0].id == codex[0].id
    page, total = store.list(backend="gemini")
    assert (page, total) == ([], 0)
    page, total = store.list(status="unknown")
    assert (page, total) == ([], 0)
    page, total = store.list(offset=100)
    assert page == [] and total == 8
    assert len(store.list(limit=0)[0]) == 8  # limit <= 0: no limit
    assert len(store.list(limit=3, offset=-5)[0]) == 3
    assert store.list(backend="", status="")[1] == 8  # empty filter = no filter


def test_list_ties_are_stable(store):
    _insert_ids(store, ["%032x" % i for i in range(10)])  # all with the same last_used
    seen = []
    for offset in range(0, 10, 3):
        page, total = store.list(limit=3, offset=offset)
        seen += [s.id for s in page]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 10


def test_list_10k_page_and_plan(tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    base = T0
    rows = []
    for i in range(10_000):
        backend = ("claude", "codex", "gemini")[i % 3]
        status = STATUSES[i % 4]
        t = (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(("%032x" % i, backend, t, t, status))
    conn = store._conn()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO sessions (id, backend, created_at, last_used, status)"
                     " VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    assert store.count() == 10_000

    start = time.perf_counter()
    page, total = store.list(backend="codex", limit=50, offset=1000)
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"\nlist(backend='codex', limit=50, offset=1000) over 10k sessions: {elapsed_ms:.2f} ms")
    expected = [r for r in reversed(rows) if r[1] == "codex"]
    assert total == len(expected) == 3333
    assert [s.id for s in page] == [r[0] for r in expected[1000:1050]]

    page, total = store.list(status="error", limit=100, offset=2400)
    expected = [r for r in reversed(rows) if r[4] == "error"]
    assert total == 2500 and [s.id for s in page] == [r[0] for r in expected[2400:2500]]

    # The page query reads an index in order: no full-table sort.
    for sql, args in [("SELECT * FROM sessions ORDER BY last_used DESC, id DESC LIMIT 10", ()),
                      ("SELECT * FROM sessions WHERE backend = ? ORDER BY last_used DESC, id DESC LIMIT 10",
                       ("codex",)),
                      ("SELECT * FROM sessions WHERE status = ? ORDER BY last_used DESC, id DESC LIMIT 10",
                       ("error",))]:
        plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan


# --- clean and latest_resumable ---------------------------------------------------------------------


def test_clean(store, clock):
    old = store.create(backend="claude")
    clock.tick(days=10)
    recent = store.create(backend="claude")
    clock.tick(days=5)
    # old: 15 days unused; recent: 5 days
    assert store.clean(20) == 0
    assert store.clean(7.5) == 1
    with pytest.raises(SessionNotFound):
        store.get(old.id)
    assert store.get(recent.id)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            store.clean(bad)
    assert store.clean(float("inf")) == 0 and store.clean(1e12) == 0
    assert store.count() == 1


def test_latest_resumable(store, clock):
    assert store.latest_resumable() is None
    a = store.create(backend="claude", working_dir="/a")
    clock.tick()
    store.record_turn(a.id, status="completed", backend_session_id="ca")
    clock.tick()
    b = store.create(backend="codex", working_dir="/b")
    clock.tick()
    store.record_turn(b.id, status="completed", backend_session_id="cb")
    clock.tick()
    store.create(backend="claude", working_dir="/a")  # newest, but no backend session id
    assert store.latest_resumable().id == b.id
    assert store.latest_resumable(backend="claude").id == a.id
    assert store.latest_resumable(working_dir="/a").id == a.id
    assert store.latest_resumable(backend="codex", working_dir="/a") is None
    clock.tick()
    store.record_turn(a.id, status="error", error_message="x")
    assert store.latest_resumable().id == a.id


def test_check(tmp_path):
    path = tmp_path / "sessions.db"
    store = SessionStore(path)
    store.check()
    for suffix in ("", "-wal", "-shm"):
        p = path.with_name(path.name + suffix)
        if p.exists():
            p.unlink()
    with pytest.raises(OSError):
        store.check()


def test_check_not_a_database(tmp_path):
    path = tmp_path / "sessions.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SessionStore(path)


# --- concurrency ------------------------------------------------------------------------------------


def _turns_worker(path, session_id, n, use_fresh_store, inherited=None):
    store = inherited if inherited is not None and not use_fresh_store else SessionStore(path)
    for _ in range(n):
        store.record_turn(session_id, status="completed", token_usage=TokenUsage(1, 2, 0, 1),
                          backend_session_id="bs")
        store.list(limit=5)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_processes_record_turns(tmp_path, method):
    path = tmp_path / "sessions.db"
    store = SessionStore(path)
    s = store.create(backend="claude")
    ctx = multiprocessing.get_context(method)
    # with fork, children reuse the parent's store object (and its connection): it must reconnect
    args = [(str(path), s.id, 50, method == "spawn", store if method == "fork" else None) for _ in range(4)]
    assert run_processes(ctx, _turns_worker, args) == [0, 0, 0, 0]
    got = store.get(s.id)
    assert got.turn_count == 200
    assert got.token_usage == TokenUsage(200, 400, 0, 200)


def _open_and_create(path, n):
    store = SessionStore(path)
    for _ in range(n):
        store.create(backend="codex")


def test_processes_open_fresh_store_concurrently(tmp_path):
    path = tmp_path / "new" / "sessions.db"
    ctx = multiprocessing.get_context("spawn")
    assert run_processes(ctx, _open_and_create, [(str(path), 25)] * 4) == [0, 0, 0, 0]
    assert SessionStore(path).count() == 100


def _open_at_once(path, barrier):
    barrier.wait()
    SessionStore(path)


def test_processes_switch_fresh_file_to_wal_at_once(tmp_path):
    # Eight workers starting together all switch the same new file to WAL: SQLite refuses the switch
    # with "database is locked" without waiting while another does it, which failed a start before.
    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        barrier = ctx.Barrier(8)
        args = [(str(tmp_path / f"{round_}.db"), barrier)] * 8
        assert run_processes(ctx, _open_at_once, args) == [0] * 8


def test_threads_share_store(store):
    s = store.create(backend="gemini")
    errors = []

    def work():
        try:
            for _ in range(50):
                store.record_turn(s.id, status="completed", token_usage=TokenUsage(1, 0))
                store.get(s.id[:8])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = store.get(s.id)
    assert got.turn_count == 200 and got.token_usage.input_tokens == 200


# --- scratch dirs, jobs and stored responses (every store holds them: any host answers for them) ----


def test_working_dirs_under(store):
    for wd in ("/srv/scratch/a", "/srv/scratch/b/c", "/srv/scratch", "/srv/scratch2/x", "/other", ""):
        store.create(backend="claude", working_dir=wd)
    assert store.working_dirs_under("/srv/scratch") == {"/srv/scratch/a", "/srv/scratch/b/c"}
    assert store.working_dirs_under("/srv/scratch/") == {"/srv/scratch/a", "/srv/scratch/b/c"}
    assert store.working_dirs_under("/nowhere") == set()


def test_jobs_contract(store):
    from clinvk.jobs.model import JobLimit, JobNotFound

    job = store.create_job(owner="a", kind="prompt", request={"prompt": "hi"}, host="h1", pid=11, max_active=2)
    assert (job.status, job.owner, job.request, job.event_count) == ("queued", "a", {"prompt": "hi"}, 0)
    store.create_job(owner="a", kind="chain", request={}, host="h2", pid=12, max_active=2)
    with pytest.raises(JobLimit, match="max_active_per_tenant"):
        store.create_job(owner="a", kind="prompt", request={}, host="h1", pid=11, max_active=2)
    other = store.create_job(owner="b", kind="prompt", request={}, host="h1", pid=11, max_active=1)  # a's cap is a's
    with pytest.raises(JobNotFound):
        store.get_job(job.id, "b")  # another owner's job does not exist for b
    with pytest.raises(JobNotFound):
        store.delete_job(job.id, "b")
    store.update_job(job.id, status="running", started_at=T0, session_id="s1", cancel_requested=True)
    got = store.get_job(job.id, "a")
    assert (got.status, got.started_at, got.session_id, got.cancel_requested) == ("running", T0, "s1", True)
    with pytest.raises(ValueError, match="owner"):
        store.update_job(job.id, owner="b")
    assert [store.append_job_event(job.id, {"n": i}) for i in range(3)] == [1, 2, 3]
    assert store.job_events(job.id, after=1) == [(2, {"n": 1}), (3, {"n": 2})]
    assert store.get_job(job.id, "a").event_count == 3
    with pytest.raises(JobNotFound):
        store.append_job_event("f" * 32, {})
    assert store.heartbeat_jobs([job.id, other.id]) == [job.id]  # the ids asked to cancel
    assert sorted(store.active_job_pids("h1")) == [11]
    assert [j.id for j in store.list_jobs("a", kind="prompt")[0]] == [job.id] and store.list_jobs("a")[1] == 2
    assert store.finish_job(job.id, "completed", result={"ok": True})
    assert not store.finish_job(job.id, "failed")  # finished once
    assert store.get_job(job.id, "a").result == {"ok": True}
    assert store.interrupt_jobs(host="h1", dead_pids=[11]) == 1  # b's job; a's is finished
    assert store.get_job(other.id, "b").status == "interrupted"
    store.update_job(job.id, finished_at=utc_now_minus(days=31))
    assert store.clean_jobs(30) == 1
    with pytest.raises(JobNotFound):
        store.get_job(job.id, "a")
    assert store.job_events(job.id) == []


def test_responses_contract(store):
    from clinvk.sessions.responses import ResponseNotFound, StoredResponse

    store.save_response(StoredResponse("resp_1", "a", "s" * 32, "claude", {"output": [1]}))
    store.save_response(StoredResponse("resp_1", "a", "s" * 32, "claude", {"output": [2]}))  # replaced
    assert store.get_response("resp_1", "a").body == {"output": [2]}
    for call in (store.get_response, store.delete_response):
        with pytest.raises(ResponseNotFound):
            call("resp_1", "b")
    store.delete_response("resp_1", "a")
    with pytest.raises(ResponseNotFound):
        store.get_response("resp_1", "a")


def utc_now_minus(**kw):
    return datetime.now(timezone.utc) - timedelta(**kw)
