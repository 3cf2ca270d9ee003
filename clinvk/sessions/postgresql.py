"""The PostgreSQL session store: one database shared by every worker of every clinvk host.

Same contract as :class:`~clinvk.sessions.sqlite.SqliteSessionStore` (the store tests run against
both). Each process keeps its own psycopg connection pool, opened on first use in that process: a
pool's connections and threads must not cross ``fork`` (gunicorn ``--preload``).

Connection budget: every worker process of every host holds up to ``pool_size`` connections, so a
deployment needs ``pool_size × workers × hosts`` (plus a few for psql and migrations) within the
server's ``max_connections`` (default 100).

The schema is versioned (table ``clinvk_schema``) and brought up to date at start-up inside one
transaction holding an advisory lock, so hosts starting together apply each step exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator

from ..errors import StoreUnavailable
from ..events import TokenUsage
from .model import (DEFAULT_OWNER, TOKEN_COLUMNS, AmbiguousSession, Session, SessionNotFound, check_id,
                    check_lookup, check_status, derive_title, utc_now)
from .postgresql_records import RECORDS_MIGRATION, PostgresRecords
from .queries import RESUMABLE, id_prefix, matching
from .store import SessionStore, TurnLease

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 4
CONNECT_TIMEOUT_SECS = 10
# Any constant both hosts agree on: pg_advisory_xact_lock takes a bigint key ("clinvk" in ASCII).
_MIGRATION_LOCK = 0x636C696E766B

MARK = "%s"  # the driver's placeholder

# Version → the statements that bring the schema from the previous version to this one. Append only.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        # COLLATE "C": ids compare byte-wise, so the prefix range below and the id tie-break of the
        # page order are the same as SQLite's, whatever the database's locale.
        """CREATE TABLE sessions (
            id TEXT COLLATE "C" PRIMARY KEY, backend TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL, last_used TIMESTAMPTZ NOT NULL,
            working_dir TEXT NOT NULL DEFAULT '', backend_session_id TEXT, model TEXT,
            initial_prompt TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'active', turn_count INTEGER NOT NULL DEFAULT 0,
            input_tokens BIGINT NOT NULL DEFAULT 0, output_tokens BIGINT NOT NULL DEFAULT 0,
            cached_tokens BIGINT NOT NULL DEFAULT 0, reasoning_tokens BIGINT NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{}', error_message TEXT)""",
        "CREATE INDEX sessions_last_used ON sessions (last_used, id)",
        "CREATE INDEX sessions_backend_last_used ON sessions (backend, last_used, id)",
        "CREATE INDEX sessions_status_last_used ON sessions (status, last_used, id)",
    ],
    2: [
        # The latest archive of a session's local directories (see clinvk.sessions.archive).
        """CREATE TABLE session_archives (
            session_id TEXT COLLATE "C" PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
            turn INTEGER NOT NULL, size INTEGER NOT NULL, data BYTEA NOT NULL, saved_at TIMESTAMPTZ NOT NULL)""",
    ],
    3: [
        # Who runs a session's turn now (SessionStore.acquire_turn); a row exists only while a turn runs.
        # Expiry is on the database's clock, so hosts whose clocks drift still agree.
        """CREATE TABLE session_turns (
            session_id TEXT COLLATE "C" PRIMARY KEY, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)""",
    ],
    4: [
        # Sessions belong to tenants (clinvk.tenants); rows from before belong to the default owner.
        f"ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '{DEFAULT_OWNER}'",
        "CREATE INDEX sessions_owner_last_used ON sessions (owner, last_used, id)",
    ],
    5: RECORDS_MIGRATION,
}
SCHEMA_VERSION = max(MIGRATIONS)


# SQLSTATE classes of a server that is not there for us: connection exceptions, insufficient
# resources (too many connections), and operator intervention's shutdowns and "starting up".
_UNREACHABLE_STATES = ("08", "53", "57P")


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (a psycopg OperationalError) means the server is down or unreachable, as
    opposed to a failed statement (a deadlock, a serialization failure, a cancelled query)."""
    from psycopg_pool import PoolTimeout
    if isinstance(exc, PoolTimeout):
        return True
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(_UNREACHABLE_STATES)


def closed_by_server(conn: Any) -> bool:
    """Whether the server has closed this idle connection (a restart, a crash, an idle timeout).

    A server that ends a connection says so, or at least closes the socket, so the socket of an idle
    connection has something to read only then (clinvk listens for no notifications): one poll,
    without a round trip. A healthy connection that did get a message is only replaced. ``poll``, not
    ``select``: a busy worker's descriptors go past select's limit of 1024."""
    if conn.closed:
        return True
    readable = select.poll()
    readable.register(conn.fileno(), select.POLLIN)
    return bool(readable.poll(0))


def row_to_session(row: dict[str, Any]) -> Session:
    return Session(
        id=row["id"], backend=row["backend"], created_at=row["created_at"], last_used=row["last_used"],
        working_dir=row["working_dir"], backend_session_id=row["backend_session_id"], model=row["model"],
        initial_prompt=row["initial_prompt"], title=row["title"], status=row["status"],
        turn_count=row["turn_count"], token_usage=TokenUsage(*(row[c] for c in TOKEN_COLUMNS)),
        tags=json.loads(row["tags"]), metadata=json.loads(row["metadata"]),
        error_message=row["error_message"], owner=row["owner"],
    )


def apply_migrations(conn: Any) -> int:
    """Bring the schema to SCHEMA_VERSION in one transaction, one host at a time; returns the version
    found. RuntimeError if the database was made by a newer clinvk."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS clinvk_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) AS v FROM clinvk_schema").fetchone()
        found = row["v"] or 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"schema version {found} is newer than this clinvk's ({SCHEMA_VERSION})")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            conn.execute("DELETE FROM clinvk_schema")
            conn.execute("INSERT INTO clinvk_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
    return found


class PostgresSessionStore(PostgresRecords, SessionStore):
    """Sessions in a PostgreSQL database, shared by every process and host that opens the same URI."""

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE):
        """Connect to ``url`` (``postgresql://user:password@host:port/database``) and bring its schema
        up to date. Raises psycopg errors when the server is unreachable."""
        self.url = url
        self.pool_size = pool_size
        self._pool_lock = threading.Lock()
        self._pool_obj: Any = None
        self._pool_pid = 0
        try:
            with self._connection() as conn:
                apply_migrations(conn)
        except BaseException:
            self.close()  # don't leave a pool retrying in the background
            raise

    # -- connections -------------------------------------------------------------------------------

    def _pool(self) -> Any:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        with self._pool_lock:
            if self._pool_obj is None or self._pool_pid != os.getpid():
                # A pool inherited through fork has dead threads and shared sockets: leave it alone
                # (closing it would close the parent's connections) and open our own.
                self._pool_obj = ConnectionPool(
                    self.url, min_size=1, max_size=self.pool_size, open=True, timeout=CONNECT_TIMEOUT_SECS,
                    # While the server is down, reconnection attempts back off (1, 2, 4… s) for this
                    # long, then the next request starts a fresh series: the pool's default (5 min)
                    # would let the backoff grow so long that clinvk noticed a returned server only
                    # minutes later. As long as a request waits: no waiting request is left without attempts.
                    reconnect_timeout=CONNECT_TIMEOUT_SECS,
                    kwargs={"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_SECS,
                            "options": "-c timezone=UTC"},
                    name="clinvk-sessions")
                self._pool_pid = os.getpid()
            return self._pool_obj

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection; what it did is committed when the block ends, rolled back on error.

        :raise StoreUnavailable: the server cannot be reached, or went away during the block."""
        import psycopg
        pool = self._pool()
        try:
            conn = self._live_connection(pool)
            try:
                with conn:  # psycopg's connection block: commit, or roll back on error
                    yield conn
            finally:
                pool.putconn(conn)
        except psycopg.OperationalError as exc:
            if not is_unreachable(exc):
                raise
            log.warning("session store unreachable: %s", exc)
            raise StoreUnavailable() from exc

    def _live_connection(self, pool: Any) -> Any:
        """A connection from ``pool`` that the server has not closed since it was used: after a
        restart every idle one is dead, and each is dropped at once (the pool's own ``check`` would
        back off a second, then two, four… between them, and cost a round trip every time)."""
        for _ in range(self.pool_size):
            conn = pool.getconn()
            if not closed_by_server(conn):
                return conn
            conn.close()
            pool.putconn(conn)  # a closed connection is discarded and replaced
        return pool.getconn()  # every idle one was dead: this one is new, or in use until now

    def _resolve(self, conn: Any, id_or_prefix: str, owner: str | None, *, lock: bool = False) -> dict[str, Any]:
        prefix = check_lookup(id_or_prefix)
        where, args = id_prefix(MARK, prefix, owner)
        rows = conn.execute(f"SELECT * FROM sessions{where} ORDER BY id LIMIT 2"
                            + (" FOR UPDATE" if lock else ""), args).fetchall()
        if not rows:
            raise SessionNotFound(f"no session found with id or prefix {prefix!r}")
        if len(rows) > 1 and rows[0]["id"] != prefix:
            n = conn.execute(f"SELECT COUNT(*) AS n FROM sessions{where}", args).fetchone()["n"]
            raise AmbiguousSession(f"ambiguous prefix {prefix!r}: matches {n} sessions")
        return rows[0]

    # -- the store interface -----------------------------------------------------------------------

    def create(self, *, backend: str, working_dir: str = "", model: str | None = None,
               initial_prompt: str = "", tags: list[str] | None = None,
               metadata: dict[str, str] | None = None, owner: str = DEFAULT_OWNER) -> Session:
        if not isinstance(owner, str) or not owner:
            raise ValueError("owner must be a non-empty string")
        if not isinstance(backend, str) or not backend:
            raise ValueError("backend must be a non-empty string")
        tags, metadata = list(tags or []), dict(metadata or {})
        if not all(isinstance(t, str) for t in tags):
            raise ValueError("tags must be strings")
        tags = list(dict.fromkeys(tags))
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata keys and values must be strings")
        now = utc_now()
        session = Session(id=secrets.token_hex(16), backend=backend, created_at=now, last_used=now,
                          working_dir=working_dir or "", model=model, initial_prompt=initial_prompt or "",
                          title=derive_title(initial_prompt or ""), tags=tags, metadata=metadata, owner=owner)
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO sessions (id, backend, created_at, last_used, working_dir, model, initial_prompt,"
                " title, status, tags, metadata, owner) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (session.id, backend, now, now, session.working_dir, model, session.initial_prompt,
                 session.title, session.status, json.dumps(tags), json.dumps(metadata), owner))
        return session

    def get(self, id_or_prefix: str, *, owner: str | None = None) -> Session:
        with self._connection() as conn:
            return row_to_session(self._resolve(conn, id_or_prefix, owner))

    def record_turn(self, session_id: str, *, status: str, backend_session_id: str | None = None,
                    token_usage: TokenUsage | None = None, error_message: str | None = None,
                    model: str | None = None) -> Session:
        check_status(status)
        check_id(session_id)
        usage = token_usage or TokenUsage()
        with self._connection() as conn:
            row = conn.execute(
                "UPDATE sessions SET turn_count = turn_count + 1, input_tokens = input_tokens + %s,"
                " output_tokens = output_tokens + %s, cached_tokens = cached_tokens + %s,"
                " reasoning_tokens = reasoning_tokens + %s, last_used = %s, status = %s,"
                " backend_session_id = COALESCE(%s, backend_session_id), model = COALESCE(%s, model),"
                " error_message = %s WHERE id = %s RETURNING *",
                (*(getattr(usage, c) for c in TOKEN_COLUMNS), utc_now(), status,
                 backend_session_id or None, model or None,
                 error_message if status == "error" else None, session_id)).fetchone()
        if row is None:
            raise SessionNotFound(f"no session found with id or prefix {session_id!r}")
        return row_to_session(row)

    def set_status(self, session_id: str, status: str) -> None:
        check_status(status)
        check_id(session_id)
        with self._connection() as conn:
            cur = conn.execute(
                "UPDATE sessions SET status = %s, last_used = %s,"
                " error_message = CASE WHEN %s = 'error' THEN error_message END WHERE id = %s",
                (status, utc_now(), status, session_id))
            if cur.rowcount == 0:
                raise SessionNotFound(f"no session found with id or prefix {session_id!r}")

    def list(self, *, backend: str | None = None, status: str | None = None, owner: str | None = None,
             limit: int = 100, offset: int = 0) -> tuple[list[Session], int]:
        clause, args = matching(MARK, backend=backend or None, status=status or None, owner=owner or None)
        with self._connection() as conn:
            # One snapshot for the page and its total, as SQLite's read transaction gives.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = conn.execute(f"SELECT * FROM sessions{clause} ORDER BY last_used DESC, id DESC"
                                " LIMIT %s OFFSET %s",
                                (*args, limit if limit > 0 else None, max(offset, 0))).fetchall()
            total = conn.execute(f"SELECT COUNT(*) AS n FROM sessions{clause}", args).fetchone()["n"]
        return [row_to_session(r) for r in rows], total

    def delete(self, id_or_prefix: str, *, owner: str | None = None) -> Session:
        with self._connection() as conn:  # resolve and delete in one transaction, the row locked
            row = self._resolve(conn, id_or_prefix, owner, lock=True)
            conn.execute("DELETE FROM sessions WHERE id = %s", (row["id"],))
        return row_to_session(row)

    def count(self) -> int:
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) AS n FROM sessions").fetchone()["n"]

    def clean(self, older_than_days: float) -> int:
        if not older_than_days > 0:  # also rejects NaN
            raise ValueError(f"older_than_days must be > 0, got {older_than_days!r}")
        try:
            cutoff = utc_now() - timedelta(days=older_than_days)
        except OverflowError:
            return 0
        with self._connection() as conn:
            return conn.execute("DELETE FROM sessions WHERE last_used < %s", (cutoff,)).rowcount

    def working_dirs_under(self, prefix: str) -> set[str]:
        start = prefix.rstrip("/") + "/"
        with self._connection() as conn:  # a range, not LIKE: no wildcard characters in paths to escape
            rows = conn.execute("SELECT DISTINCT working_dir FROM sessions"
                                " WHERE working_dir COLLATE \"C\" >= %s AND working_dir COLLATE \"C\" < %s",
                                (start, start[:-1] + "0")).fetchall()
        return {row["working_dir"] for row in rows}

    def latest_resumable(self, *, backend: str | None = None, working_dir: str | None = None,
                         owner: str | None = None) -> Session | None:
        where, args = matching(MARK, RESUMABLE, owner=owner, backend=backend or None, working_dir=working_dir)
        with self._connection() as conn:
            row = conn.execute(f"SELECT * FROM sessions{where}"
                               " ORDER BY last_used DESC, id DESC LIMIT 1", args).fetchone()
        return row_to_session(row) if row else None

    # -- one turn at a time, cluster-wide ----------------------------------------------------------

    def acquire_turn(self, session_id: str, holder: str, ttl_secs: float, *,
                     replacing: str | None = None) -> TurnLease:
        """One conditional write takes the lease (free, expired, ours or ``replacing``'s); when it
        does not, the current holder's lease is read and returned."""
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO session_turns AS t (session_id, holder, expires_at)"
                " VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))"
                " ON CONFLICT (session_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE t.expires_at < clock_timestamp() OR t.holder = excluded.holder OR t.holder = %s"
                " RETURNING holder, extract(epoch FROM expires_at)::float8 AS expires_at",
                (session_id, holder, ttl_secs, replacing)).fetchone()
            if row is None:
                row = conn.execute("SELECT holder, extract(epoch FROM expires_at)::float8 AS expires_at"
                                   " FROM session_turns WHERE session_id = %s", (session_id,)).fetchone()
        if row is None:  # released between the two statements: free now, try once more
            return self.acquire_turn(session_id, holder, ttl_secs, replacing=replacing)
        return TurnLease(session_id, row["holder"], row["expires_at"])

    def renew_turn(self, session_id: str, holder: str, ttl_secs: float) -> bool:
        """Extend ``holder``'s lease; False once another host took it over (it had expired)."""
        with self._connection() as conn:
            cur = conn.execute("UPDATE session_turns SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                               " WHERE session_id = %s AND holder = %s", (ttl_secs, session_id, holder))
            return cur.rowcount == 1

    def release_turn(self, session_id: str, holder: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM session_turns WHERE session_id = %s AND holder = %s", (session_id, holder))

    # -- archives of a session's local directories -------------------------------------------------

    shares_local_state = True

    def save_archive(self, session_id: str, turn: int, data: bytes) -> bool:
        """Keep ``data`` as the session's archive at ``turn`` unless a newer one is stored; False
        then (or when the session is gone)."""
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO session_archives (session_id, turn, size, data, saved_at)"
                " SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM sessions WHERE id = %s)"
                " ON CONFLICT (session_id) DO UPDATE SET turn = excluded.turn, size = excluded.size,"
                " data = excluded.data, saved_at = excluded.saved_at"
                " WHERE session_archives.turn <= excluded.turn RETURNING turn",
                (session_id, turn, len(data), data, utc_now(), session_id)).fetchone()
        return row is not None

    def archive_turn(self, session_id: str) -> int | None:
        """The turn of the stored archive, or None; reads no archive bytes."""
        with self._connection() as conn:
            row = conn.execute("SELECT turn FROM session_archives WHERE session_id = %s", (session_id,)).fetchone()
        return row["turn"] if row else None

    def load_archive(self, session_id: str) -> tuple[int, bytes] | None:
        with self._connection() as conn:
            row = conn.execute("SELECT turn, data FROM session_archives WHERE session_id = %s",
                               (session_id,)).fetchone()
        return (row["turn"], bytes(row["data"])) if row else None

    def check(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1 FROM sessions LIMIT 1").fetchall()

    def close(self) -> None:
        """Close this process's pool (a pool inherited through fork is left to its owner)."""
        with self._pool_lock:
            if self._pool_obj is not None and self._pool_pid == os.getpid():
                self._pool_obj.close()
            self._pool_obj = None
