"""Jobs and stored Responses in the PostgreSQL session store: their tables and the store methods.

A mixin of :class:`~clinvk.sessions.postgresql.PostgresSessionStore` (which applies
:data:`RECORDS_MIGRATION` as one step of its versioned schema and provides ``_connection``); the same
contract as :mod:`clinvk.sessions.sqlite_records`, so a job started through one host is followed,
cancelled and listed through any other.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from ..jobs.model import ACTIVE, FINISHED, Job, JobLimit, JobNotFound, QUEUED
from ..jobs.store import JobStore
from .model import utc_now
from .queries import matching
from .responses import ResponseNotFound, ResponseStore, StoredResponse

RECORDS_MIGRATION = [
    """CREATE TABLE jobs (
        id TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
        heartbeat_at TIMESTAMPTZ, host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE, session_id TEXT, error TEXT,
        request TEXT NOT NULL DEFAULT '{}', result TEXT, event_count INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX jobs_owner_created ON jobs (owner, created_at, id)",
    "CREATE INDEX jobs_status ON jobs (status)",
    """CREATE TABLE job_events (
        job_id TEXT COLLATE "C" NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq))""",
    """CREATE TABLE responses (
        id TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, session_id TEXT NOT NULL, backend TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL, body TEXT NOT NULL)""",
]

MARK = "%s"  # the driver's placeholder

_JSON_FIELDS = ("result",)
_UPDATABLE = {"status", "started_at", "finished_at", "session_id", "error", "result", "cancel_requested"}
_ACTIVE = list(ACTIVE)
_FINISHED = list(FINISHED)


def _row_to_job(row: dict[str, Any]) -> Job:
    return Job(id=row["id"], owner=row["owner"], kind=row["kind"], status=row["status"],
               created_at=row["created_at"], request=json.loads(row["request"]),
               started_at=row["started_at"], finished_at=row["finished_at"], heartbeat_at=row["heartbeat_at"],
               host=row["host"], pid=row["pid"], cancel_requested=bool(row["cancel_requested"]),
               session_id=row["session_id"], error=row["error"],
               result=json.loads(row["result"]) if row["result"] else None, event_count=row["event_count"])


def _column(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(value) if value is not None else None
    if name == "cancel_requested":
        return bool(value)
    return value


class PostgresRecords(JobStore, ResponseStore):
    # -- jobs ----------------------------------------------------------------------------------------

    def create_job(self, *, owner: str, kind: str, request: dict[str, Any], host: str, pid: int,
                   max_active: int) -> Job:
        now = utc_now()
        job_id = secrets.token_hex(16)
        with self._connection() as conn:
            # Count and insert under a per-owner lock held to commit: the cap holds across hosts.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('clinvk-jobs:' || %s))", (owner,))
            active = conn.execute("SELECT COUNT(*) AS n FROM jobs WHERE owner = %s AND status = ANY(%s)",
                                  (owner, _ACTIVE)).fetchone()["n"]
            if active >= max_active:
                raise JobLimit(f"{active} jobs are queued or running; at most {max_active} are allowed "
                               "(jobs.max_active_per_tenant)")
            row = conn.execute(
                "INSERT INTO jobs (id, owner, kind, status, created_at, heartbeat_at, host, pid, request)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (job_id, owner, kind, QUEUED, now, now, host, pid, json.dumps(request))).fetchone()
        return _row_to_job(row)

    def get_job(self, job_id: str, owner: str) -> Job:
        with self._connection() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = %s AND owner = %s", (job_id, owner)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return _row_to_job(row)

    def list_jobs(self, owner: str, *, status: str | None = None, kind: str | None = None, limit: int = 100,
                  offset: int = 0) -> tuple[list[Job], int]:
        clause, args = matching(MARK, owner=owner, status=status or None, kind=kind or None)
        with self._connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = conn.execute(f"SELECT * FROM jobs{clause} ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
                                (*args, limit if limit > 0 else None, max(offset, 0))).fetchall()
            total = conn.execute(f"SELECT COUNT(*) AS n FROM jobs{clause}", args).fetchone()["n"]
        return [_row_to_job(r) for r in rows], total

    def update_job(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        names = sorted(fields)
        with self._connection() as conn:
            conn.execute(f"UPDATE jobs SET {', '.join(f'{n} = %s' for n in names)} WHERE id = %s",
                         (*(_column(n, fields[n]) for n in names), job_id))

    def finish_job(self, job_id: str, status: str, *, error: str | None = None,
                   result: dict[str, Any] | None = None) -> bool:
        if status not in FINISHED:
            raise ValueError(f"{status!r} is not a finished status")
        with self._connection() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = %s, error = %s, result = %s, finished_at = %s"
                " WHERE id = %s AND status = ANY(%s)",
                (status, error, json.dumps(result) if result is not None else None, utc_now(), job_id, _ACTIVE))
            return cur.rowcount == 1

    def append_job_event(self, job_id: str, event: dict[str, Any]) -> int:
        with self._connection() as conn:
            # The row lock orders concurrent appends to one job; seq is the new event_count.
            row = conn.execute("UPDATE jobs SET event_count = event_count + 1 WHERE id = %s RETURNING event_count",
                               (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job with id {job_id!r}")
            conn.execute("INSERT INTO job_events (job_id, seq, data) VALUES (%s, %s, %s)",
                         (job_id, row["event_count"], json.dumps(event, ensure_ascii=False)))
        return row["event_count"]

    def job_events(self, job_id: str, after: int = 0, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        with self._connection() as conn:
            rows = conn.execute("SELECT seq, data FROM job_events WHERE job_id = %s AND seq > %s ORDER BY seq"
                                " LIMIT %s", (job_id, after, limit)).fetchall()
        return [(row["seq"], json.loads(row["data"])) for row in rows]

    def heartbeat_jobs(self, job_ids: list[str]) -> list[str]:
        if not job_ids:
            return []
        with self._connection() as conn:
            rows = conn.execute("UPDATE jobs SET heartbeat_at = %s WHERE id = ANY(%s) RETURNING id, cancel_requested",
                                (utc_now(), list(job_ids))).fetchall()
        return [row["id"] for row in rows if row["cancel_requested"]]

    def interrupt_jobs(self, *, stale_before: datetime | None = None, host: str | None = None,
                       dead_pids: list[int] | None = None) -> int:
        conditions, args = [], []
        if stale_before is not None:
            conditions.append("heartbeat_at < %s")
            args.append(stale_before)
        if host is not None and dead_pids:
            conditions.append("(host = %s AND pid = ANY(%s))")
            args += [host, list(dead_pids)]
        if not conditions:
            return 0
        message = "the server running this job went away before it finished"
        with self._connection() as conn:
            return conn.execute(
                "UPDATE jobs SET status = 'interrupted', error = %s, finished_at = %s WHERE status = ANY(%s)"
                f" AND ({' OR '.join(conditions)})", (message, utc_now(), _ACTIVE, *args)).rowcount

    def active_job_pids(self, host: str) -> list[int]:
        with self._connection() as conn:
            rows = conn.execute("SELECT DISTINCT pid FROM jobs WHERE host = %s AND status = ANY(%s)",
                                (host, _ACTIVE)).fetchall()
        return [row["pid"] for row in rows]

    def delete_job(self, job_id: str, owner: str) -> None:
        with self._connection() as conn:
            if conn.execute("DELETE FROM jobs WHERE id = %s AND owner = %s", (job_id, owner)).rowcount == 0:
                raise JobNotFound(f"no job with id {job_id!r}")
            conn.execute("DELETE FROM job_events WHERE job_id = %s", (job_id,))

    def clean_jobs(self, older_than_days: float) -> int:
        if not older_than_days > 0:
            raise ValueError(f"older_than_days must be > 0, got {older_than_days!r}")
        cutoff = utc_now() - timedelta(days=older_than_days)
        with self._connection() as conn:
            conn.execute("DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE status = ANY(%s)"
                         " AND finished_at < %s)", (_FINISHED, cutoff))
            return conn.execute("DELETE FROM jobs WHERE status = ANY(%s) AND finished_at < %s",
                                (_FINISHED, cutoff)).rowcount

    # -- stored responses ------------------------------------------------------------------------------

    def save_response(self, response: StoredResponse) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO responses (id, owner, session_id, backend, created_at, body)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET owner = excluded.owner,"
                " session_id = excluded.session_id, backend = excluded.backend, created_at = excluded.created_at,"
                " body = excluded.body",
                (response.id, response.owner, response.session_id, response.backend, utc_now(),
                 json.dumps(response.body, ensure_ascii=False)))

    def get_response(self, response_id: str, owner: str) -> StoredResponse:
        with self._connection() as conn:
            row = conn.execute("SELECT * FROM responses WHERE id = %s AND owner = %s",
                               (response_id, owner)).fetchone()
        if row is None:
            raise ResponseNotFound(f"no response with id {response_id!r}")
        return StoredResponse(row["id"], row["owner"], row["session_id"], row["backend"], json.loads(row["body"]))

    def delete_response(self, response_id: str, owner: str) -> None:
        with self._connection() as conn:
            cur = conn.execute("DELETE FROM responses WHERE id = %s AND owner = %s", (response_id, owner))
            if cur.rowcount == 0:
                raise ResponseNotFound(f"no response with id {response_id!r}")
