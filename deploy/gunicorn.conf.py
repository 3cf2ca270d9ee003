"""gunicorn settings for running clinvk in production: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

The same settings as ``clinvk serve`` (gthread workers, the shutdown and metrics hooks of
``clinvk.gunicorn_hooks``, timeouts from the clinvk config), taken from ``clinvk.serve.gunicorn_options``
so that both ways of running the server stay alike, plus what a service needs: sizes and the address
from the environment, an access log on stdout.

The clinvk config is the usual one (``$CLINVK_CONFIG``, else ``$CLINVK_HOME/config.yaml``, plus
``CLINVK_*`` variables); a bad value stops gunicorn here, before it binds, with the key in the message.

Environment:

- ``CLINVK_BIND``: address(es) to listen on, comma-separated (``127.0.0.1:8080``, ``0.0.0.0:8080``,
  ``unix:/run/clinvk/sock``); default ``server.host:server.port`` (127.0.0.1:8080).
- ``CLINVK_WORKERS``, ``CLINVK_THREADS``: worker processes and threads per worker (workers x threads
  requests, CLI runs included, at once); default ``server.workers`` (1) and ``server.threads`` (64).
- ``CLINVK_SERVER__SHUTDOWN_GRACE_SECS`` (or ``server.shutdown_grace_secs``): seconds in-flight runs
  get on stop or reload before their CLIs are ended; default 10. gunicorn's ``graceful_timeout`` is
  that plus 4 s, and the process exits within grace + 5 s: keep the service manager's stop timeout
  above that (systemd ``TimeoutStopSec``, ``docker stop --stop-timeout``).
- ``PROMETHEUS_MULTIPROC_DIR``: where all workers keep their metrics (wiped at start); set it in the
  service manager, on a tmpfs. Without it, and with ``server.metrics_enabled``, a temporary
  directory is made and removed again on exit.

Anything else can be given on gunicorn's command line or in ``GUNICORN_CMD_ARGS``; both win over
this file.
"""

import os

from clinvk import serve
from clinvk.config import ConfigError, load_config


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}: must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name}: must be >= {minimum}, got {value}")
    return value


try:
    _config = load_config()
except ConfigError as exc:  # one line naming the key, not gunicorn's traceback
    raise SystemExit(f"clinvk configuration error: {exc}") from None
_server = _config.server

# Everything `clinvk serve` sets, so both ways of running the server stay alike: the gthread worker
# class, timeouts (graceful_timeout follows server.shutdown_grace_secs; gthread's `timeout` is only the worker heartbeat; each CLI run has its own deadline,
# server.request_timeout_secs; keepalive = server.idle_timeout_secs; the sockets' read/write timeouts
# = server.read/write_timeout_secs, applied in when_ready), worker_tmp_dir on /dev/shm, no control
# socket, and the hooks that end the CLI process groups on shutdown and keep the prometheus
# multiprocess directory right (on_starting, child_exit, post_worker_init, worker_int, worker_abort,
# worker_exit, ...).
_options = serve.gunicorn_options(_config)
globals().update(_options)

# -- what a service sets differently ---------------------------------------------------------------

bind = [b.strip() for b in os.environ.get("CLINVK_BIND", "").split(",") if b.strip()] or _options["bind"]
workers = _env_int("CLINVK_WORKERS", _server.workers)
threads = _env_int("CLINVK_THREADS", _server.threads)
accesslog = "-"  # stdout: journald or the container runtime keeps it; errors go to stderr
# Behind nginx %(h)s is the proxy; forwarded_for shows the client (X-Forwarded-For as nginx sent it).
access_log_format = ('%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s '
                     'forwarded_for="%({x-forwarded-for}i)s" ua="%(a)s"')

# clinvk's own log lines (one per request, notes about runs) next to gunicorn's on stderr, and the
# metrics directory made ready before any worker starts (kept when PROMETHEUS_MULTIPROC_DIR is set).
serve.setup_logging()
serve.prepare_metrics_dir(_config)
