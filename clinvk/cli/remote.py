"""Talking to a running clinvk server (``clinvk jobs``): ``--server URL`` or ``$CLINVK_SERVER``, the API
key from ``$CLINVK_API_KEY`` (sent as a bearer token). Standard library only."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator

import click

from .context import EXIT_BACKEND_FAILED, EXIT_USAGE, Failure

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT_SECS = 60.0


def server_option(func):
    return click.option("--server", "server", envvar="CLINVK_SERVER", default=DEFAULT_SERVER, show_default=True,
                        metavar="URL", help="The clinvk server (also $CLINVK_SERVER). The API key, if the "
                                            "server wants one, comes from $CLINVK_API_KEY.")(func)


class Server:
    def __init__(self, url: str):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise Failure(f"--server must be an http(s) URL such as {DEFAULT_SERVER}, not {url!r}", EXIT_USAGE)
        self.url = url.rstrip("/")
        self.key = os.environ.get("CLINVK_API_KEY", "")

    def _request(self, method: str, path: str, body: Any = None, accept: str = "application/json",
                 timeout: float | None = TIMEOUT_SECS):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={"Accept": accept})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise Failure(f"{method} {path}: {exc.code} {problem_message(exc)}",
                          EXIT_USAGE if 400 <= exc.code < 500 and exc.code not in (401, 403, 429)
                          else EXIT_BACKEND_FAILED) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failure(f"cannot reach the clinvk server at {self.url}: {reason}", EXIT_BACKEND_FAILED) from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with self._request(method, path, body) as response:
            return json.loads(response.read() or b"null")

    def lines(self, path: str) -> Iterator[dict[str, Any]]:
        """The NDJSON objects of a streamed answer, as they arrive (no read timeout: a job may be quiet)."""
        with self._request("GET", path, accept="application/x-ndjson", timeout=None) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)


def problem_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return exc.reason or ""
    return body.get("detail") or body.get("message") or exc.reason or ""
