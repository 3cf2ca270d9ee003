"""Who may talk to the server from a browser: the ``Host`` it answers to and the origins whose
state-changing requests it runs.

- ``Host`` (DNS rebinding): a page on ``evil.example`` whose name resolves to 127.0.0.1 reaches a
  loopback server "same-origin", but its requests carry ``Host: evil.example``. Any Host outside
  ``server.allowed_hosts`` is a 400. The default, when bound to loopback: the loopback names and the
  bind address. A public bind needs the list (or ``*``, with a warning at start-up). Behind a
  trusted proxy its ``X-Forwarded-Host`` is the Host.
- Origin (CSRF): a cross-site page can POST without a preflight. A state-changing request
  (POST, PUT, PATCH, DELETE) whose ``Origin`` is neither an allowed CORS origin nor the server's own,
  or that says ``Sec-Fetch-Site: cross-site``, is a 403 before anything runs. The server's own origin
  is the request's Host (behind a trusted proxy: its ``X-Forwarded-Host``), so ``/docs`` "Try it out"
  works directly and behind nginx. Requests without ``Origin`` (curl, SDKs) are not browsers' and pass.
"""

from __future__ import annotations

import functools
import logging
import re
from urllib.parse import urlsplit

from flask import Flask, request

from ...config import Config
from ...exposure import allowed_hosts
from .clientip import parse_networks, peer_is_trusted
from .cors import origin_pattern
from .errors import ApiError

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str) -> tuple[str, int | None]:
    """``Host`` header → (lower-case name without brackets, port or None); ("", None) when unparsable."""
    value = value.strip().lower()
    match = re.fullmatch(r"(\[[0-9a-f:.]+\]|[^\s:/\[\]@]+)(?::(\d{1,5}))?", value)
    if not match:
        return "", None
    return match.group(1).strip("[]"), int(match.group(2)) if match.group(2) else None


def host_allowed(name: str, allowed: list[str]) -> bool:
    for entry in allowed:
        if entry == "*" or name == entry.strip("[]"):
            return True
        if entry.startswith(".") and (name.endswith(entry) or name == entry[1:]):
            return True
    return False


def same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://name[:port]``) is the server reached as ``host`` (``name[:port]``).

    A Host without a port means the default port of the scheme the client used, which is the
    origin's own if the request is same-origin (TLS may end at a proxy, so the scheme is not compared).
    """
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    name, port = split_host(host)
    if not name or parts.hostname is None or parts.hostname.lower() != name:
        return False
    return port is None and parts.port is None or (port or DEFAULT_PORTS.get(parts.scheme)) == origin_port


def init_request_origin(app: Flask, config: Config) -> None:
    """Register the Host check and the cross-site refusal; they run before any other admission hook."""
    hosts = allowed_hosts(config)
    if "*" in hosts:
        log.warning("server.allowed_hosts is '*': any Host header is answered, so a DNS rebinding page can "
                    "reach this server as if it were its own origin; list the host names instead")
    origins = [origin_pattern(o) for o in config.server.cors_allowed_origins if o.strip()]
    trusted = parse_networks(config.server.trusted_proxies)

    def own_host() -> str:
        if trusted and peer_is_trusted(request.remote_addr, trusted):
            forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
            if forwarded:
                return forwarded
        return request.headers.get("Host", "")

    @functools.lru_cache(maxsize=1024)  # a server is reached under few names
    def answers_to(host: str) -> bool:
        return host_allowed(split_host(host)[0], hosts)

    @app.before_request
    def _check_host_and_origin():
        host = own_host()
        if not answers_to(host):
            raise ApiError(400, f"Host {host!r} is not one this server answers to "
                                "(server.allowed_hosts)",
                           errors=[{"field": "header.Host", "message": "not in server.allowed_hosts"}])
        if request.method not in STATE_CHANGING:
            return None
        origin = request.headers.get("Origin")
        if origin is not None:
            if any(p.match(origin) for p in origins) or same_origin(origin, host):
                return None
            raise ApiError(403, f"cross-origin request refused: Origin {origin!r} is neither this server nor "
                                "one of server.cors_allowed_origins",
                           errors=[{"field": "header.Origin", "message": "not an allowed origin"}])
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise ApiError(403, "cross-site request refused (Sec-Fetch-Site: cross-site without an allowed Origin)",
                           errors=[{"field": "header.Sec-Fetch-Site", "message": "cross-site"}])
        return None
