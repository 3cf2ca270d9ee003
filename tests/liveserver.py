"""A real HTTP server on 127.0.0.1 around a test's app, for clients that need a socket (the SDKs)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server


class LiveServer:
    """Serve ``app`` on a free loopback port in a background thread; use as a context manager."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="live-server", daemon=True)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def live(app):
    """A live server around the test's ``app``."""
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def make_live(make_app):
    """``make_live(**config_overrides)``: a live server around a fresh app, stopped after the test."""
    servers = []

    def make(**overrides):
        server = LiveServer(make_app(**overrides)).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)


README = Path(__file__).resolve().parents[1] / "README.rst"


def readme_snippet(section: str, contains: str) -> str:
    """The ``.. code-block:: python`` in README.rst's ``section`` whose code contains ``contains``."""
    text = README.read_text()
    start = text.index(f"\n{section}\n{'-' * len(section)}\n") + 1
    following = re.search(r"\n[^\n]+\n-{3,}\n", text[start + 2 * len(section) + 2:])
    body = text[start:start + 2 * len(section) + 2 + following.start()] if following else text[start:]
    for block in body.split(".. code-block:: python\n")[1:]:
        lines = []
        for line in block.split("\n")[1:]:  # after the blank line that follows the directive
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        code = "\n".join(lines).strip() + "\n"
        if contains in code:
            return code
    raise LookupError(f"no python snippet with {contains!r} in README.rst section {section!r}")
