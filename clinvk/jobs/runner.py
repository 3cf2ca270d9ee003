"""Running jobs: one thread per job in the process that accepted it, a heartbeat, cancellation from any
host, and ``interrupted`` for jobs whose process went away.

The job's events and final result go to the session store as they happen, so any worker or host can
answer for the job. Cancellation reaches the job directly when it runs in this process, and otherwise
through the store: the heartbeat of the process running it reads ``cancel_requested``.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import logging
import os
import socket
import threading
from datetime import timedelta
from typing import Any

from ..sessions.model import utc_now
from .model import FAILED, INTERRUPTED, RUNNING, Job
from .store import JobStore
from .work import STOPPED, Work

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = 3  # a job whose heartbeat is this many intervals old is interrupted
CANCELLED_BY_CLIENT = "cancelled by the client (DELETE /api/v1/jobs/{id})"


def job_service(service):
    """A service like ``service`` (same store, gate, metrics observers) whose runs may take
    ``jobs.timeout_secs`` instead of ``server.request_timeout_secs``."""
    config = service.config
    server = dataclasses.replace(config.server, request_timeout_secs=config.jobs.timeout_secs)
    # A shallow copy, as Service.for_tenant makes: the tenant, its gates, the turn leases, the homes
    # and the sandbox stay the caller's; only the time limit differs.
    derived = copy.copy(service)
    derived.config = dataclasses.replace(config, server=server)
    return derived


def pid_alive(pid: int) -> bool:
    """Whether a process runs with this pid. A zombie does not: a killed worker whose parent died too
    may wait a long time for a reaper that never comes (PID 1 of a container)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel (zombies count as alive then)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class JobRunner:
    """Starts jobs in this process and keeps their records true."""

    def __init__(self, service):
        self.service = job_service(service)
        self.store: JobStore = service.store
        self.config = service.config.jobs
        self.host = socket.gethostname()
        self._work: dict[str, Work] = {}
        self._lock = threading.Lock()
        self._heartbeat_pid = 0
        self._wake = threading.Event()

    # -- submitting ----------------------------------------------------------------------------------

    def submit(self, owner: str, kind: str, request: dict[str, Any], work: Work) -> Job:
        """Record a queued job and start its thread. Raises JobLimit when the owner has too many."""
        job = self.store.create_job(owner=owner, kind=kind, request=request, host=self.host, pid=os.getpid(),
                                    max_active=self.config.max_active_per_tenant)
        with self._lock:
            self._work[job.id] = work
        self._ensure_heartbeat()
        threading.Thread(target=self._run, args=(job.id, work), name=f"clinvk-job-{job.id[:8]}",
                         daemon=True).start()
        return job

    def _run(self, job_id: str, work: Work) -> None:
        def started() -> None:
            self.store.update_job(job_id, status=RUNNING, started_at=utc_now(), session_id=work.session_id)

        work.on_start = started
        status, error, result = FAILED, None, None
        try:
            for event in work.events():
                self.store.append_job_event(job_id, event)
            status, error, result = work.status, work.error, work.result
        except Exception as exc:
            log.exception("job %s failed inside the server", job_id)
            error = f"the job failed inside the server: {exc}"
        finally:
            with self._lock:
                self._work.pop(job_id, None)
            try:
                if not self.store.finish_job(job_id, status, error=error, result=result):
                    log.warning("job %s had already ended (interrupted?) when its run finished", job_id)
            except Exception:
                log.exception("could not record the end of job %s", job_id)

    # -- cancelling ----------------------------------------------------------------------------------

    def runs_here(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._work

    def cancel(self, job_id: str) -> None:
        """Ask a queued or running job to end: at once when it runs here, else via the store."""
        with self._lock:
            work = self._work.get(job_id)
        if work is None:
            self.store.update_job(job_id, cancel_requested=True)
            return
        # Its process groups are killed on a thread of their own: each may wait out a grace period.
        threading.Thread(target=work.cancel, args=(CANCELLED_BY_CLIENT,), name="clinvk-job-cancel",
                         daemon=True).start()

    # -- liveness ------------------------------------------------------------------------------------

    def _ensure_heartbeat(self) -> None:
        # Per process: gunicorn may build the app in its master (--preload) and fork the workers.
        with self._lock:
            if self._heartbeat_pid == os.getpid():
                return
            self._heartbeat_pid = os.getpid()
        threading.Thread(target=self._heartbeat, name="clinvk-job-heartbeat", daemon=True).start()
        atexit.register(self._interrupt_local)

    def _interrupt_local(self) -> None:
        """At exit (a worker stopping): jobs still running here will not finish; say so at once."""
        with self._lock:
            ids = list(self._work)
        for job_id in ids:
            try:
                self.store.finish_job(job_id, INTERRUPTED, error=STOPPED)
            except Exception:
                log.exception("could not mark job %s interrupted", job_id)

    def _heartbeat(self) -> None:
        while True:
            self._wake.wait(self.config.heartbeat_secs)
            with self._lock:
                ids = list(self._work)
            try:
                for job_id in self.store.heartbeat_jobs(ids):
                    with self._lock:
                        work = self._work.get(job_id)
                    if work is not None and not work.cancelled:
                        work.cancel(CANCELLED_BY_CLIENT)
            except Exception:
                log.exception("job heartbeat failed")

    def expire_stale(self) -> int:
        """Mark jobs interrupted whose process stopped sending heartbeats (crashed, host gone)."""
        cutoff = utc_now() - timedelta(seconds=self.config.heartbeat_secs * MISSED_HEARTBEATS)
        return self.store.interrupt_jobs(stale_before=cutoff)

    def recover(self) -> int:
        """At start-up: jobs of this host whose process is gone, and stale ones anywhere, are interrupted."""
        dead = [pid for pid in self.store.active_job_pids(self.host) if pid != os.getpid() and not pid_alive(pid)]
        cutoff = utc_now() - timedelta(seconds=self.config.heartbeat_secs * MISSED_HEARTBEATS)
        return self.store.interrupt_jobs(stale_before=cutoff, host=self.host, dead_pids=dead)

