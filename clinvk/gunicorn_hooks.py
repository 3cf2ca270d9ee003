"""gunicorn server hooks shared by `clinvk serve` and deploy/gunicorn.conf.py.

They make sure no CLI process outlives its worker: a graceful stop (SIGTERM) lets runs finish until
just before gunicorn's graceful timeout would SIGKILL the worker, then ends their process groups; a
quick stop (SIGINT/SIGQUIT) ends them at once.
"""

from __future__ import annotations

import signal
import threading

from . import runner

# Kill the CLIs this long before gunicorn's own SIGKILL, so requests can still answer.
SHUTDOWN_MARGIN_SECS = 1.5


def post_worker_init(worker) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    delay = max(0.0, float(worker.cfg.graceful_timeout) - SHUTDOWN_MARGIN_SECS)

    def on_sigterm(signum, frame):
        timer = threading.Timer(delay, runner.terminate_all, kwargs={"reason": "server shutting down"})
        timer.daemon = True
        timer.start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_int(worker) -> None:
    runner.terminate_all("server shutting down")


def worker_abort(worker) -> None:
    runner.terminate_all("worker aborted")


def worker_exit(server, worker) -> None:
    runner.terminate_all("worker exiting")
