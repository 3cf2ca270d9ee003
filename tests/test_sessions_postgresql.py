"""What only the PostgreSQL store has: its versioned schema applied by one host at a time, pools that
do not cross fork, a URI in the config (the shared contract is in tests/test_sessions.py)."""

from __future__ import annotations

import multiprocessing
import os

import psycopg
import pytest

from clinvk.config import load_config
from clinvk.events import TokenUsage
from clinvk.sessions import open_store
from clinvk.sessions import postgresql as pg
from clinvk.sessions.postgresql import PostgresSessionStore
from tests.helpers import run_processes
from tests.services import postgres_db, postgres_server  # noqa: F401 (fixtures)


def _open_and_create(url, n):
    store = PostgresSessionStore(url)
    for _ in range(n):
        store.create(backend="codex")
    store.close()


def test_hosts_starting_together_apply_the_schema_once(postgres_db):
    ctx = multiprocessing.get_context("spawn")
    assert run_processes(ctx, _open_and_create, [(postgres_db, 10)] * 4) == [0, 0, 0, 0]
    store = PostgresSessionStore(postgres_db)
    assert store.count() == 40
    store.close()
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT version FROM clinvk_schema").fetchall() == [(pg.SCHEMA_VERSION,)]


def test_newer_schema_is_refused(postgres_db):
    PostgresSessionStore(postgres_db).close()
    with psycopg.connect(postgres_db) as conn:
        conn.execute("UPDATE clinvk_schema SET version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        PostgresSessionStore(postgres_db)


def test_a_missing_step_is_applied_on_the_next_start(postgres_db, monkeypatch):
    monkeypatch.setattr(pg, "MIGRATIONS", {**pg.MIGRATIONS, pg.SCHEMA_VERSION + 1: [
        "CREATE TABLE probe_added (x INTEGER)"]})
    monkeypatch.setattr(pg, "SCHEMA_VERSION", pg.SCHEMA_VERSION + 1)
    PostgresSessionStore(postgres_db).close()
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT version FROM clinvk_schema").fetchone() == (pg.SCHEMA_VERSION,)
        assert conn.execute("SELECT count(*) FROM probe_added").fetchone() == (0,)


def _turns(store, session_id, n):
    for _ in range(n):
        store.record_turn(session_id, status="completed", token_usage=TokenUsage(1, 1))


def test_forked_children_open_their_own_pool(postgres_db):
    store = PostgresSessionStore(postgres_db)
    s = store.create(backend="claude")  # the parent's pool is open before the fork
    ctx = multiprocessing.get_context("fork")
    assert run_processes(ctx, _turns, [(store, s.id, 20)] * 3) == [0, 0, 0]
    assert store.get(s.id).turn_count == 60  # and the parent's pool still works
    store.close()


def test_config_uri_opens_postgres_and_is_redacted(postgres_db, tmp_path):
    config = load_config(env={"CLINVK_HOME": str(tmp_path), "CLINVK_SESSION__STORE": postgres_db})
    store = open_store(config.session_store, pool_size=config.session.store_pool_size)
    assert isinstance(store, PostgresSessionStore) and store.pool_size == 4
    store.close()
    secret = load_config(env={"CLINVK_HOME": str(tmp_path),
                              "CLINVK_SESSION__STORE": "postgresql://u:hunter2@db/clinvk"})
    assert "hunter2" not in str(secret.to_dict()) and secret.to_dict()["session"]["store"].startswith(
        "postgresql://u:***@")


def test_unreachable_server_fails_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "CONNECT_TIMEOUT_SECS", 2)
    from clinvk.errors import StoreUnavailable
    from tests.server_process import free_port
    with pytest.raises(StoreUnavailable, match="session store is unreachable"):
        PostgresSessionStore(f"postgresql://nobody@127.0.0.1:{free_port()}/none")


@pytest.mark.parametrize("value", ["mysql://db/x", "relative/sessions.db"])
def test_bad_store_location_names_the_key(tmp_path, value):
    from clinvk.config import ConfigError
    with pytest.raises(ConfigError, match="session.store"):
        load_config(env={"CLINVK_HOME": str(tmp_path), "CLINVK_SESSION__STORE": value})


def test_turn_lease_is_one_holder_at_a_time_and_expires(postgres_db):
    a, b = PostgresSessionStore(postgres_db), PostgresSessionStore(postgres_db)  # two hosts
    s = a.create(backend="claude")
    assert a.acquire_turn(s.id, "host-a", 30).holder == "host-a"
    taken = b.acquire_turn(s.id, "host-b", 30)
    assert taken.holder == "host-a" and taken.expires_at > 0
    assert b.renew_turn(s.id, "host-b", 30) is False and a.renew_turn(s.id, "host-a", 30) is True
    assert b.acquire_turn(s.id, "host-b", 30, replacing="host-a").holder == "host-b"  # a known-dead holder
    b.release_turn(s.id, "host-a")  # not the holder: nothing happens
    assert a.acquire_turn(s.id, "host-a", 30).holder == "host-b"
    b.release_turn(s.id, "host-b")
    assert a.acquire_turn(s.id, "host-a", 0.2).holder == "host-a"
    import time
    deadline = time.monotonic() + 10
    while b.acquire_turn(s.id, "host-b", 30).holder != "host-b":  # host-a stopped renewing
        assert time.monotonic() < deadline, "the expired lease was never free"
        time.sleep(0.1)
    assert a.renew_turn(s.id, "host-a", 30) is False  # host-a learns it lost the turn
    a.close()
    b.close()


def test_concurrent_acquires_have_one_winner(postgres_db):
    from concurrent.futures import ThreadPoolExecutor
    store = PostgresSessionStore(postgres_db)
    s = store.create(backend="codex")
    with ThreadPoolExecutor(8) as pool:
        holders = list(pool.map(lambda i: store.acquire_turn(s.id, f"h{i}", 30).holder, range(8)))
    assert len(set(holders)) == 1
    store.close()


def test_a_dead_connection_is_seen_on_any_descriptor_number():
    """A busy worker's connections get descriptor numbers above select()'s limit (1024); the check for
    a connection the server closed must work there too, not raise."""
    import socket

    class Connection:  # what closed_by_server reads of a psycopg connection
        closed = False

        def __init__(self, fd):
            self.fd = fd

        def fileno(self):
            return self.fd

    ours, server = socket.socketpair()
    high = os.dup2(ours.fileno(), 1500)
    try:
        assert pg.closed_by_server(Connection(high)) is False  # nothing to read: alive
        server.close()  # the server ends the connection
        assert pg.closed_by_server(Connection(high)) is True
    finally:
        os.close(high)
        ours.close()
