"""Jobs and stored Responses in the SQLite session store: their tables and the store methods.

A mixin of :class:`~clinvk.sessions.sqlite.SqliteSessionStore`, which creates :data:`SCHEMA` (idempotent)
after its own tables and provides ``_conn``, ``_write`` and ``_read``.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from ..jobs.model import ACTIVE, FINISHED, Job, JobLimit, JobNotFound, QUEUED
from ..jobs.store import JobStore
from .model import format_time, parse_time, utc_now
from .queries import matching
from .responses import ResponseNotFound, ResponseStore, StoredResponse

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, heartbeat_at TEXT,
        host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0, session_id TEXT, error TEXT,
        request TEXT NOT NULL DEFAULT '{}', result TEXT, event_count INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at, id)",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status)",
    """CREATE TABLE IF NOT EXISTS job_events (
        job_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq))""",
    """CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, session_id TEXT NOT NULL, backend TEXT NOT NULL,
        created_at TEXT NOT NULL, body TEXT NOT NULL)""",
]

MARK = "?"  # the driver's placeholder

_TIME_FIELDS = ("started_at", "finished_at", "heartbeat_at")
_JSON_FIELDS = ("result",)
_UPDATABLE = {"status", "started_at", "finished_at", "session_id", "error", "result", "cancel_requested"}


def _time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def _row_to_job(row) -> Job:
    return Job(id=row["id"], owner=row["owner"], kind=row["kind"], status=row["status"],
               created_at=parse_time(row["created_at"]), request=json.loads(row["request"]),
               started_at=_time(row["started_at"]), finished_at=_time(row["finished_at"]),
               heartbeat_at=_time(row["heartbeat_at"]), host=row["host"], pid=row["pid"],
               cancel_requested=bool(row["cancel_requested"]), session_id=row["session_id"], error=row["error"],
               result=json.loads(row["result"]) if row["result"] else None, event_count=row["event_count"])


def _column(name: str, value: Any) -> Any:
    if name in _TIME_FIELDS or isinstance(value, datetime):
        return format_time(value) if value else None
    if name in _JSON_FIELDS:
        return json.dumps(value) if value is not None else None
    if isinstance(value, bool):
        return int(value)
    return value


_ACTIVE_SQL = "status IN ({})".format(", ".join(f"'{s}'" for s in ACTIVE))


class SqliteRecords(JobStore, ResponseStore):
    # -- jobs ----------------------------------------------------------------------------------------

    def create_job(self, *, owner: str, kind: str, request: dict[str, Any], host: str, pid: int,
                   max_active: int) -> Job:
        now = format_time(utc_now())
        job_id = secrets.token_hex(16)
        with self._write() as conn:  # count and insert under one lock: the cap holds across processes
            active = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE owner = ? AND {_ACTIVE_SQL}",
                                  (owner,)).fetchone()[0]
            if active >= max_active:
                raise JobLimit(f"{active} jobs are queued or running; at most {max_active} are allowed "
                               "(jobs.max_active_per_tenant)")
            conn.execute("INSERT INTO jobs (id, owner, kind, status, created_at, heartbeat_at, host, pid, request)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (job_id, owner, kind, QUEUED, now, now, host, pid, json.dumps(request)))
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row)

    def get_job(self, job_id: str, owner: str) -> Job:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return _row_to_job(row)

    def list_jobs(self, owner: str, *, status: str | None = None, kind: str | None = None, limit: int = 100,
                  offset: int = 0) -> tuple[list[Job], int]:
        clause, args = matching(MARK, owner=owner, status=status or None, kind=kind or None)
        with self._read() as conn:
            rows = conn.execute(f"SELECT * FROM jobs{clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                                (*args, limit if limit > 0 else -1, max(offset, 0))).fetchall()
            total = conn.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0]
        return [_row_to_job(r) for r in rows], total

    def update_job(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        names = sorted(fields)
        self._conn().execute(f"UPDATE jobs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                             (*(_column(n, fields[n]) for n in names), job_id))

    def finish_job(self, job_id: str, status: str, *, error: str | None = None,
                   result: dict[str, Any] | None = None) -> bool:
        if status not in FINISHED:
            raise ValueError(f"{status!r} is not a finished status")
        cur = self._conn().execute(
            f"UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = ? WHERE id = ? AND {_ACTIVE_SQL}",
            (status, error, json.dumps(result) if result is not None else None, format_time(utc_now()), job_id))
        return cur.rowcount == 1

    def append_job_event(self, job_id: str, event: dict[str, Any]) -> int:
        with self._write() as conn:
            seq = conn.execute("SELECT event_count + 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if seq is None:
                raise JobNotFound(f"no job with id {job_id!r}")
            conn.execute("INSERT INTO job_events (job_id, seq, data) VALUES (?, ?, ?)",
                         (job_id, seq[0], json.dumps(event, ensure_ascii=False)))
            conn.execute("UPDATE jobs SET event_count = ? WHERE id = ?", (seq[0], job_id))
        return seq[0]

    def job_events(self, job_id: str, after: int = 0, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        rows = self._conn().execute("SELECT seq, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq"
                                    " LIMIT ?", (job_id, after, limit)).fetchall()
        return [(row["seq"], json.loads(row["data"])) for row in rows]

    def heartbeat_jobs(self, job_ids: list[str]) -> list[str]:
        if not job_ids:
            return []
        marks = ", ".join("?" for _ in job_ids)
        with self._write() as conn:
            conn.execute(f"UPDATE jobs SET heartbeat_at = ? WHERE id IN ({marks})",
                         (format_time(utc_now()), *job_ids))
            rows = conn.execute(f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({marks})",
                                job_ids).fetchall()
        return [row["id"] for row in rows]

    def interrupt_jobs(self, *, stale_before: datetime | None = None, host: str | None = None,
                       dead_pids: list[int] | None = None) -> int:
        conditions, args = [], []
        if stale_before is not None:
            conditions.append("heartbeat_at < ?")
            args.append(format_time(stale_before))
        if host is not None and dead_pids:
            conditions.append(f"(host = ? AND pid IN ({', '.join('?' for _ in dead_pids)}))")
            args += [host, *dead_pids]
        if not conditions:
            return 0
        message = "the server running this job went away before it finished"
        return self._conn().execute(
            f"UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ? WHERE {_ACTIVE_SQL}"
            f" AND ({' OR '.join(conditions)})", (message, format_time(utc_now()), *args)).rowcount

    def active_job_pids(self, host: str) -> list[int]:
        rows = self._conn().execute(f"SELECT DISTINCT pid FROM jobs WHERE host = ? AND {_ACTIVE_SQL}",
                                    (host,)).fetchall()
        return [row["pid"] for row in rows]

    def delete_job(self, job_id: str, owner: str) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).rowcount == 0:
                raise JobNotFound(f"no job with id {job_id!r}")
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))

    def clean_jobs(self, older_than_days: float) -> int:
        if not older_than_days > 0:
            raise ValueError(f"older_than_days must be > 0, got {older_than_days!r}")
        cutoff = format_time(utc_now() - timedelta(days=older_than_days))
        finished = ", ".join(f"'{s}'" for s in FINISHED)
        with self._write() as conn:
            conn.execute(f"DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE status IN ({finished})"
                         " AND finished_at < ?)", (cutoff,))
            return conn.execute(f"DELETE FROM jobs WHERE status IN ({finished}) AND finished_at < ?",
                                (cutoff,)).rowcount

    # -- stored responses ------------------------------------------------------------------------------

    def save_response(self, response: StoredResponse) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO responses (id, owner, session_id, backend, created_at, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (response.id, response.owner, response.session_id, response.backend, format_time(utc_now()),
             json.dumps(response.body, ensure_ascii=False)))

    def get_response(self, response_id: str, owner: str) -> StoredResponse:
        row = self._conn().execute("SELECT * FROM responses WHERE id = ? AND owner = ?",
                                   (response_id, owner)).fetchone()
        if row is None:
            raise ResponseNotFound(f"no response with id {response_id!r}")
        return StoredResponse(row["id"], row["owner"], row["session_id"], row["backend"], json.loads(row["body"]))

    def delete_response(self, response_id: str, owner: str) -> None:
        cur = self._conn().execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
        if cur.rowcount == 0:
            raise ResponseNotFound(f"no response with id {response_id!r}")
