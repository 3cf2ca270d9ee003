"""The SQLite session store: one SQLite database (WAL mode) shared by every gunicorn worker, thread and CLI process.

Why SQLite: WAL lets readers run while one writer commits, SQLite's own file locks make the store safe
across processes (no lock files of our own), and indexes keep list/filter/paginate fast at any size.
Each thread of each process gets its own connection (sqlite3 connections must not cross threads, and
must never be used again in a child after ``fork``).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

from ..events import TokenUsage
from ..private_dirs import make_private_dirs
from .model import (DEFAULT_OWNER, TOKEN_COLUMNS, AmbiguousSession, Session, SessionNotFound, check_id,
                    check_lookup, check_status, derive_title, format_time, parse_time, utc_now)
from .queries import RESUMABLE, id_prefix, matching
from .sqlite_records import SCHEMA as RECORDS_SCHEMA, SqliteRecords
from .store import SessionStore, TurnLease

SCHEMA_VERSION = 1  # stored in PRAGMA user_version; bump it and add a migration step when the schema changes
BUSY_TIMEOUT_MS = 15_000  # wait this long for another process's write lock before "database is locked"

MARK = "?"  # the driver's placeholder

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY, backend TEXT NOT NULL, created_at TEXT NOT NULL, last_used TEXT NOT NULL,
        working_dir TEXT NOT NULL DEFAULT '', backend_session_id TEXT, model TEXT,
        initial_prompt TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'active', turn_count INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{}', error_message TEXT)""",
    # `id` ends each index so ORDER BY last_used DESC, id DESC (a stable page order) is read straight
    # from the index, with or without a backend/status filter.
    "CREATE INDEX IF NOT EXISTS sessions_last_used ON sessions (last_used, id)",
    "CREATE INDEX IF NOT EXISTS sessions_backend_last_used ON sessions (backend, last_used, id)",
    "CREATE INDEX IF NOT EXISTS sessions_status_last_used ON sessions (status, last_used, id)",
]
# Who runs a session's turn now (see SessionStore.acquire_turn); a row exists only while a turn runs.
_TURN_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS session_turns (
        session_id TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)""",
]


def add_owner_column(conn: sqlite3.Connection) -> None:
    """Sessions belong to tenants. Idempotent; rows from before tenants belong to the default owner.
    An older clinvk still reads and writes such a database (it never names the column), so the
    schema version stays."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
    if "owner" not in columns:
        conn.execute(f"ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '{DEFAULT_OWNER}'")
    conn.execute("CREATE INDEX IF NOT EXISTS sessions_owner_last_used ON sessions (owner, last_used, id)")



def enable_wal(conn: sqlite3.Connection) -> None:
    """Put the database file in WAL mode (a property of the file, set once, kept): what lets reads run
    during a write.

    Switching the mode needs the file to itself, and SQLite answers "database is locked" at once, without
    its busy handler, while another process opens or switches the same fresh file (several workers
    starting together): retry for as long as a write would wait."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def row_to_session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"], backend=row["backend"], created_at=parse_time(row["created_at"]),
        last_used=parse_time(row["last_used"]), working_dir=row["working_dir"],
        backend_session_id=row["backend_session_id"], model=row["model"],
        initial_prompt=row["initial_prompt"], title=row["title"], status=row["status"],
        turn_count=row["turn_count"], token_usage=TokenUsage(*(row[c] for c in TOKEN_COLUMNS)),
        tags=json.loads(row["tags"]), metadata=json.loads(row["metadata"]),
        error_message=row["error_message"], owner=row["owner"],
    )


class SqliteSessionStore(SqliteRecords, SessionStore):
    """Sessions in one SQLite file, safe to share between processes and threads."""

    def __init__(self, path: str | os.PathLike[str]):
        """Open (creating if needed) the database at ``path``; a new parent directory is made 0700."""
        self.path = Path(path)
        make_private_dirs(self.path.parent)
        # Create the file ourselves so it is 0600 from the start (SQLite would use 0644); SQLite gives
        # the -wal and -shm files the same mode as the database. An existing store is tightened too:
        # it holds users' prompts.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        if self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)
        self._local = threading.local()
        enable_wal(self._conn())
        with self._write() as conn:  # several workers may open a fresh file at once: create it once
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: schema version {version} is newer than this clinvk's"
                                   f" ({SCHEMA_VERSION})")
            for statement in _SCHEMA + _TURN_SCHEMA:
                conn.execute(statement)
            for statement in RECORDS_SCHEMA:  # jobs, their events, stored responses: added tables only
                conn.execute(statement)
            add_owner_column(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        # SQLite connections must not be carried across fork (gunicorn --preload opens the store in
        # the master): a child that finds its parent's connection opens its own.
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            # isolation_level=None: no implicit transactions; we issue BEGIN ourselves.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")  # in WAL: no corruption risk, far fewer fsyncs
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, waiting up to busy_timeout for it. A plain
        # (deferred) BEGIN would start as a reader and upgrade on its first write; in WAL mode that
        # upgrade fails at once with "database is locked" (no waiting) if another process committed
        # meanwhile. It also means what we read back in the transaction is exactly what we wrote.
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # never leave this thread's connection inside a transaction
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One snapshot for several SELECTs (e.g. a page and its total); never blocks writers in WAL.
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _resolve(self, conn: sqlite3.Connection, id_or_prefix: str, owner: str | None) -> sqlite3.Row:
        prefix = check_lookup(id_or_prefix)
        where, args = id_prefix(MARK, prefix, owner)
        rows = conn.execute(f"SELECT * FROM sessions{where} ORDER BY id LIMIT 2", args).fetchall()
        if not rows:
            raise SessionNotFound(f"no session found with id or prefix {prefix!r}")
        if len(rows) > 1 and rows[0]["id"] != prefix:
            n = conn.execute(f"SELECT COUNT(*) FROM sessions{where}", args).fetchone()[0]
            raise AmbiguousSession(f"ambiguous prefix {prefix!r}: matches {n} sessions")
        return rows[0]

    def create(self, *, backend: str, working_dir: str = "", model: str | None = None,
               initial_prompt: str = "", tags: list[str] | None = None,
               metadata: dict[str, str] | None = None, owner: str = DEFAULT_OWNER) -> Session:
        """Create and store an ``active`` session with zero turns and usage; the title is derived
        from the prompt. ValueError for an empty backend or owner, or non-string tags/metadata."""
        if not isinstance(owner, str) or not owner:
            raise ValueError("owner must be a non-empty string")
        if not isinstance(backend, str) or not backend:
            raise ValueError("backend must be a non-empty string")
        tags, metadata = list(tags or []), dict(metadata or {})
        if not all(isinstance(t, str) for t in tags):
            raise ValueError("tags must be strings")
        tags = list(dict.fromkeys(tags))  # keep order, drop duplicates
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata keys and values must be strings")
        now = utc_now()
        session = Session(id=secrets.token_hex(16), backend=backend, created_at=now, last_used=now,
                          working_dir=working_dir or "", model=model, initial_prompt=initial_prompt or "",
                          title=derive_title(initial_prompt or ""), tags=tags, metadata=metadata, owner=owner)
        self._conn().execute(
            "INSERT INTO sessions (id, backend, created_at, last_used, working_dir, model, initial_prompt,"
            " title, status, tags, metadata, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session.id, backend, format_time(now), format_time(now), session.working_dir, model, session.initial_prompt,
             session.title, session.status, json.dumps(tags), json.dumps(metadata), owner))
        return session

    def get(self, id_or_prefix: str, *, owner: str | None = None) -> Session:
        """The session with this full id or unique prefix (of at least MIN_PREFIX characters), among
        ``owner``'s sessions when given.

        Raises InvalidSessionId (not 1-32 lowercase hex), SessionNotFound or AmbiguousSession."""
        return row_to_session(self._resolve(self._conn(), id_or_prefix, owner))

    def record_turn(self, session_id: str, *, status: str, backend_session_id: str | None = None,
                    token_usage: TokenUsage | None = None, error_message: str | None = None,
                    model: str | None = None) -> Session:
        """Record one finished run: turn_count + 1, usage added to the stored sum, last_used = now,
        status set; backend_session_id and model set when given (never cleared); error_message kept
        only when status is 'error'. Returns the updated session."""
        check_status(status)
        check_id(session_id)
        usage = token_usage or TokenUsage()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE sessions SET turn_count = turn_count + 1, input_tokens = input_tokens + ?,"
                " output_tokens = output_tokens + ?, cached_tokens = cached_tokens + ?,"
                " reasoning_tokens = reasoning_tokens + ?, last_used = ?, status = ?,"
                " backend_session_id = COALESCE(?, backend_session_id), model = COALESCE(?, model),"
                " error_message = ? WHERE id = ?",
                (*(getattr(usage, c) for c in TOKEN_COLUMNS), format_time(utc_now()), status,
                 backend_session_id or None, model or None,
                 error_message if status == "error" else None, session_id))
            if cur.rowcount == 0:
                raise SessionNotFound(f"no session found with id or prefix {session_id!r}")
            row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row_to_session(row)

    def set_status(self, session_id: str, status: str) -> None:
        """Set the status (e.g. 'active' when a turn starts) and bump last_used; clears error_message
        unless the status is 'error'."""
        check_status(status)
        check_id(session_id)
        cur = self._conn().execute(
            "UPDATE sessions SET status = ?, last_used = ?,"
            " error_message = CASE WHEN ? = 'error' THEN error_message END WHERE id = ?",
            (status, format_time(utc_now()), status, session_id))
        if cur.rowcount == 0:
            raise SessionNotFound(f"no session found with id or prefix {session_id!r}")

    def list(self, *, backend: str | None = None, status: str | None = None, owner: str | None = None,
             limit: int = 100, offset: int = 0) -> tuple[list[Session], int]:
        """One page of sessions, newest last_used first, and the total number matching the filters.
        Filters are exact matches (None or "" = no filter); limit <= 0 means no limit."""
        clause, args = matching(MARK, backend=backend or None, status=status or None, owner=owner or None)
        with self._read() as conn:
            page = (*args, limit if limit > 0 else -1, max(offset, 0))
            rows = conn.execute(f"SELECT * FROM sessions{clause} ORDER BY last_used DESC, id DESC"
                                " LIMIT ? OFFSET ?", page).fetchall()
            total = conn.execute(f"SELECT COUNT(*) FROM sessions{clause}", args).fetchone()[0]
        return [row_to_session(r) for r in rows], total

    def delete(self, id_or_prefix: str, *, owner: str | None = None) -> Session:
        """Delete the session with this full id or unique prefix (among ``owner``'s) and return it."""
        with self._write() as conn:  # resolve and delete under one lock: the id can't change in between
            row = self._resolve(conn, id_or_prefix, owner)
            conn.execute("DELETE FROM sessions WHERE id = ?", (row["id"],))
        return row_to_session(row)

    def count(self) -> int:
        """Number of stored sessions."""
        return self._conn().execute("SELECT COUNT(*) FROM sessions").fetchone()[0]

    def clean(self, older_than_days: float) -> int:
        """Delete sessions whose last_used is more than ``older_than_days`` ago; returns how many.
        The age must be > 0: a zero or negative value (which would delete everything) is an error."""
        if not older_than_days > 0:  # also rejects NaN
            raise ValueError(f"older_than_days must be > 0, got {older_than_days!r}")
        try:
            cutoff = utc_now() - timedelta(days=older_than_days)
        except OverflowError:  # older than the calendar: nothing is that old
            return 0
        with self._write() as conn:
            return conn.execute("DELETE FROM sessions WHERE last_used < ?", (format_time(cutoff),)).rowcount

    def working_dirs_under(self, prefix: str) -> set[str]:
        start = prefix.rstrip("/") + "/"
        rows = self._conn().execute(  # a range, not LIKE: no wildcard characters in paths to escape
            "SELECT DISTINCT working_dir FROM sessions WHERE working_dir >= ? AND working_dir < ?",
            (start, start[:-1] + "0")).fetchall()
        return {row[0] for row in rows}

    def latest_resumable(self, *, backend: str | None = None, working_dir: str | None = None,
                         owner: str | None = None) -> Session | None:
        """The most recently used session that has a backend_session_id (so the CLI can resume it),
        optionally only for this backend, exactly this working_dir and/or this owner; None if there is none."""
        where, args = matching(MARK, RESUMABLE, owner=owner, backend=backend or None, working_dir=working_dir)
        row = self._conn().execute(f"SELECT * FROM sessions{where}"
                                   " ORDER BY last_used DESC, id DESC LIMIT 1", args).fetchone()
        return row_to_session(row) if row else None

    def acquire_turn(self, session_id: str, holder: str, ttl_secs: float, *,
                     replacing: str | None = None) -> TurnLease:
        now = time.time()
        conn = self._conn()
        # One statement, its own transaction: a row comes back only when the turn was taken.
        row = conn.execute(
            "INSERT INTO session_turns (session_id, holder, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
            " WHERE session_turns.expires_at < ? OR session_turns.holder IN (excluded.holder, ?)"
            " RETURNING holder, expires_at",
            (session_id, holder, now + ttl_secs, now, replacing)).fetchone()
        if row is None:  # held by another: who, until when (it may have ended meanwhile: then say so)
            row = conn.execute("SELECT holder, expires_at FROM session_turns WHERE session_id = ?",
                               (session_id,)).fetchone()
            if row is None:
                return self.acquire_turn(session_id, holder, ttl_secs)
        return TurnLease(session_id, row["holder"], row["expires_at"])

    def renew_turn(self, session_id: str, holder: str, ttl_secs: float) -> bool:
        cur = self._conn().execute("UPDATE session_turns SET expires_at = ? WHERE session_id = ? AND holder = ?",
                                   (time.time() + ttl_secs, session_id, holder))
        return cur.rowcount == 1

    def release_turn(self, session_id: str, holder: str) -> None:
        self._conn().execute("DELETE FROM session_turns WHERE session_id = ? AND holder = ?", (session_id, holder))

    def check(self) -> None:
        """Raise if the store is unusable (file gone, unreadable, not a clinvk database)."""
        if not self.path.exists():  # an open connection keeps working on a deleted file: look for it
            raise FileNotFoundError(f"session store {self.path} no longer exists")
        self._conn().execute("SELECT 1 FROM sessions LIMIT 1").fetchall()

    def close(self) -> None:
        """Close this thread's connection (other threads' close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None
