"""Where one server (host:port) keeps its runtime files, shared by all its gunicorn workers: the run
slots' lock files (``gate``) and the record of live CLI process groups (``groups``)."""

from __future__ import annotations

import re
from pathlib import Path

from .config import Config


def server_run_dir(config: Config) -> Path:
    name = re.sub(r"[^A-Za-z0-9.-]", "_", f"{config.server.host}-{config.server.port}")
    return config.home / "run" / name
