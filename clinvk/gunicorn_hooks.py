"""gunicorn server hooks shared by `clinvk serve` and deploy/gunicorn.conf.py.

They make sure no CLI process outlives its worker:

- a graceful stop (SIGTERM): the worker stops accepting at once (gunicorn), runs may finish within
  ``server.shutdown_grace_secs``, then every remaining process group is ended (SIGTERM, SIGKILL 2 s
  later) and new runs are refused, so that streams end with an error event and waiting requests
  get a 503. gunicorn's ``graceful_timeout`` is the grace plus :data:`SHUTDOWN_MARGIN_SECS`: the
  time to end the groups and send those answers before gunicorn would SIGKILL the worker;
- a quick stop (SIGINT/SIGQUIT) ends them at once;
- a worker that dies without running any code (SIGKILL: OOM killer, worker timeout, ``kill -9``):
  each worker records its live process groups on disk (:mod:`clinvk.grouprecord`) and the master's
  ``child_exit`` kills what the dead worker left;
- what the agents' own commands leave outside their CLI's group (:mod:`clinvk.leftovers`): the master
  becomes their child subreaper in ``on_starting``, so a worker finds them among the master's children.

The others apply the server settings gunicorn has no knob for, and keep the prometheus multiprocess
directory right (``on_starting`` wipes it, ``child_exit`` marks a dead worker's files):

- ``when_ready``: ``server.read_timeout_secs`` and ``server.write_timeout_secs`` become the
  listening socket's ``SO_RCVTIMEO`` / ``SO_SNDTIMEO``, which every accepted connection inherits. A
  read of the request line, headers or body that receives nothing for that long, or a write the
  client accepts nothing of for that long, fails and the connection is closed (a stalled client
  cannot hold a thread, nor a stream's CLI process, forever).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import struct
import threading

from . import leftovers, runner
from .grouprecord import GroupRecord, end_groups
from .rundir import server_run_dir

log = logging.getLogger(__name__)

# gunicorn's graceful_timeout = server.shutdown_grace_secs + this: ending the groups (SIGTERM, then
# SIGKILL after runner.TERM_GRACE_SECS) and answering their requests, before gunicorn's own SIGKILL.
SHUTDOWN_MARGIN_SECS = 4


def graceful_timeout(shutdown_grace_secs: int) -> int:
    return shutdown_grace_secs + SHUTDOWN_MARGIN_SECS


def post_worker_init(worker) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    # Derived from gunicorn's own timeout, so that a --graceful-timeout given to gunicorn still ends
    # the runs before it runs out.
    grace = max(0.0, float(worker.cfg.graceful_timeout) - SHUTDOWN_MARGIN_SECS)

    def on_sigterm(signum, frame):
        timer = threading.Timer(grace, runner.stop_all, kwargs={"reason": "server shutting down"})
        timer.daemon = True
        timer.start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    worker.log.error_log.addFilter(SlowClientFilter())
    runner.record_groups(GroupRecord(groups_dir(_clinvk_config(worker))))


def worker_int(worker) -> None:
    runner.stop_all("server shutting down")


def worker_abort(worker) -> None:
    runner.stop_all("worker aborted")


def worker_exit(server, worker) -> None:
    runner.stop_all("worker exiting")


def groups_dir(config):
    """Where the workers of this server record their live process groups."""
    return server_run_dir(config) / "groups"


# -- settings gunicorn has no knob for -----------------------------------------------------------

def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def apply_socket_timeouts(listeners, read_timeout: float, write_timeout: float) -> None:
    for listener in listeners:
        sock = getattr(listener, "sock", listener)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if read_timeout > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(read_timeout))
        if write_timeout > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(write_timeout))


def _clinvk_config(arbiter_or_worker):
    app = getattr(arbiter_or_worker, "app", None)
    config = getattr(app, "clinvk_config", None)
    if config is None:  # plain gunicorn with deploy/gunicorn.conf.py: the usual file + environment
        from .config import load_config
        config = load_config()
        if app is not None:
            app.clinvk_config = config  # once per process: child_exit runs for every dead worker
    return config


def when_ready(server) -> None:
    config = _clinvk_config(server)
    apply_socket_timeouts(server.LISTENERS, config.server.read_timeout_secs, config.server.write_timeout_secs)


class SlowClientFilter(logging.Filter):
    """gunicorn logs a socket timeout (EAGAIN from SO_RCVTIMEO/SO_SNDTIMEO) with a traceback as if it
    were a server fault; it is a slow or stalled client: one INFO line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            record.msg = ("closed a connection: the client sent or accepted nothing within the server's "
                          "read/write timeout (server.read_timeout_secs, server.write_timeout_secs)")
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


# -- prometheus multiprocess directory -----------------------------------------------------------

def wipe_metrics_dir(path: str) -> None:
    """Remove the previous run's files (stale counters of dead pids would be summed in)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass


def on_starting(server) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        wipe_metrics_dir(path)
    # A previous master of this server that was killed left its workers' runs behind.
    directory = groups_dir(_clinvk_config(server))
    left = end_groups(directory)
    if left:
        log.warning("ended %d CLI process groups a previous run of this server left behind", left)
    leftovers.set_scope(str(directory))
    left = leftovers.end_scope()
    if left:
        log.warning("ended %d processes the runs of a previous run of this server left behind", left)
    leftovers.become_reaper()


def child_exit(server, worker) -> None:
    """A worker exited: end the runs it left (none, unless it was killed), mark its metrics dead."""
    left = end_groups(groups_dir(_clinvk_config(server)), worker.pid)
    if left:
        server.log.warning("ended %d CLI process groups of worker %s, which died without ending them",
                           left, worker.pid)
    left = leftovers.end_worker(worker.pid)
    if left:
        server.log.warning("ended %d processes the runs of worker %s left behind", left, worker.pid)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.environ.get("CLINVK_OWNS_METRICS_DIR") == path:
        shutil.rmtree(path, ignore_errors=True)
