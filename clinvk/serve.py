"""`clinvk serve`: gunicorn (gthread workers) embedded in-process through its BaseApplication."""

from __future__ import annotations

import errno
import os
import socket
import sys

from gunicorn.app.base import BaseApplication

from . import gunicorn_hooks
from .config import Config

BANNER = """clinvk API server starting on http://{host}:{port}
Available endpoints:
  Custom API: /api/v1/prompt, /api/v1/parallel, /api/v1/chain, /api/v1/compare
  OpenAI: /openai/v1/models, /openai/v1/chat/completions
  Anthropic: /anthropic/v1/messages
  Docs: /openapi.json, /docs
  Health: /health
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
        "graceful_timeout": 30,
        "keepalive": max(1, int(server.idle_timeout_secs)),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn 27's control socket lives in $HOME and would clash between servers.
        "control_socket_disable": True,
        "post_worker_init": gunicorn_hooks.post_worker_init,
        "worker_int": gunicorn_hooks.worker_int,
        "worker_abort": gunicorn_hooks.worker_abort,
        "worker_exit": gunicorn_hooks.worker_exit,
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"  # the heartbeat file must not sit on a slow disk
    return options


class ClinvkApplication(BaseApplication):
    def __init__(self, config: Config):
        self.clinvk_config = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.clinvk_config).items():
            self.cfg.set(key, value)

    def load(self):
        from .server import create_app
        return create_app(self.clinvk_config)


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


def run(config: Config) -> int:
    check_port(config.server.host, config.server.port)
    print(BANNER.format(host=config.server.host, port=config.server.port), flush=True)
    # gunicorn parses sys.argv in BaseApplication; give it nothing of ours.
    sys.argv = sys.argv[:1]
    ClinvkApplication(config).run()
    return 0
