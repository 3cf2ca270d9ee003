"""`clinvk serve`: gunicorn (gthread workers) embedded in-process through its BaseApplication."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import tempfile

from gunicorn.app.base import BaseApplication

from . import gunicorn_hooks
from .apikeys import ApiKeyError, ApiKeys
from .config import Config, ConfigError
from .exposure import startup_warnings

log = logging.getLogger("clinvk.serve")

BANNER = """clinvk API server starting on http://{host}:{port}
Available endpoints:
  Custom API: /api/v1/prompt, /api/v1/parallel, /api/v1/chain, /api/v1/compare, /api/v1/jobs,
              /api/v1/sessions, /api/v1/backends
  OpenAI: /openai/v1/models, /openai/v1/chat/completions, /openai/v1/responses
  Anthropic: /anthropic/v1/messages
  Docs: /openapi.json, /docs
  Health: /health
CLI runs: {sandbox}
Press Ctrl+C to stop"""


class PortUnavailable(OSError):
    pass


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(config: Config) -> dict:
    server = config.server
    options = {
        "bind": [bind_address(server.host, server.port)],
        "worker_class": "gthread",
        "workers": server.workers,
        "threads": server.threads,
        # gthread: the worker heartbeat, not a per-request limit (runs have their own deadline).
        "timeout": 30,
        "graceful_timeout": gunicorn_hooks.graceful_timeout(server.shutdown_grace_secs),
        "keepalive": max(1, int(server.idle_timeout_secs)),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn 27's control socket lives in $HOME and would clash between servers.
        "control_socket_disable": True,
        "on_starting": gunicorn_hooks.on_starting,
        "when_ready": gunicorn_hooks.when_ready,
        "child_exit": gunicorn_hooks.child_exit,
        "on_exit": gunicorn_hooks.on_exit,
        "post_worker_init": gunicorn_hooks.post_worker_init,
        "worker_int": gunicorn_hooks.worker_int,
        "worker_abort": gunicorn_hooks.worker_abort,
        "worker_exit": gunicorn_hooks.worker_exit,
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"  # the heartbeat file must not sit on a slow disk
    return options


class ClinvkApplication(BaseApplication):
    def __init__(self, config: Config, api_keys: ApiKeys | None = None):
        self.clinvk_config = config
        self.api_keys = api_keys
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.clinvk_config).items():
            self.cfg.set(key, value)

    def load(self):
        from .server import create_app
        return create_app(self.clinvk_config, api_keys=self.api_keys)


def check_port(host: str, port: int) -> None:
    """Fail fast with one clear line instead of gunicorn's five retries when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise PortUnavailable(exc.errno, f"cannot listen on {host}:{port}: {reason}") from None


def setup_logging() -> None:
    """clinvk's own log lines (one per request, run notes) and the rate limiter's on stderr, next to
    gunicorn's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                                           "%Y-%m-%d %H:%M:%S %z"))
    for name, level in (("clinvk", logging.INFO), ("flask-limiter", logging.WARNING)):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = False


def prepare_metrics_dir(config: Config) -> None:
    """prometheus_client multiprocess mode: the directory must be set before any worker (or the
    library) starts, and must not hold a previous run's files."""
    if not config.server.metrics_enabled:
        return
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        path = tempfile.mkdtemp(prefix="clinvk-metrics-", dir=base)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        os.environ["CLINVK_OWNS_METRICS_DIR"] = path  # removed again by the on_exit hook
    gunicorn_hooks.wipe_metrics_dir(path)


def run(config: Config) -> int:
    check_port(config.server.host, config.server.port)
    setup_logging()
    prepare_metrics_dir(config)
    from .sandbox import SandboxUnavailable
    from .sandbox import resolve as resolve_sandbox
    from .cluster_gate import counts_in_redis
    from .server.http.ratelimit import RateLimitConfigError, check_storage_uri
    try:
        sandbox = resolve_sandbox(config.run.sandbox)  # probed once here; the workers inherit the answer
        # Loaded once here, so a gopass failure stops the server with one clear line, and the
        # workers inherit the keys instead of each running gopass.
        api_keys = ApiKeys.from_config(config)
        if config.server.rate_limit_enabled or counts_in_redis(config):  # tenants' run quotas use it too
            check_storage_uri(config.server.rate_limit_storage_uri)
        warnings = startup_warnings(config)
    except (ApiKeyError, RateLimitConfigError, ConfigError, SandboxUnavailable) as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 1
    for warning in warnings:
        log.warning("%s", warning)
    server = config.server
    if server.rate_limit_enabled and server.rate_limit_storage_uri.startswith("memory") and server.workers > 1:
        log.warning("rate limits use memory:// storage with %d workers: each worker counts on its own, so up "
                    "to %d times the limit gets through; use a redis:// URI in server.rate_limit_storage_uri",
                    server.workers, server.workers)
    if config.run.sandbox == "auto" and not sandbox.active:
        log.warning("CLI runs are NOT sandboxed: %s. Each CLI can read whatever the service user can "
                    "(README: Sandbox)", sandbox.reason)
    runs = f"sandboxed with {sandbox.reason}" if sandbox.active else f"not sandboxed ({sandbox.reason})"
    print(BANNER.format(host=config.server.host, port=config.server.port, sandbox=runs), flush=True)
    # gunicorn parses sys.argv in BaseApplication; give it nothing of ours.
    sys.argv = sys.argv[:1]
    ClinvkApplication(config, api_keys).run()
    return 0
