"""Rate limits with flask-limiter, per tenant (per client IP when keys are off).

Every tenant (:mod:`clinvk.tenants`) has its own counter: all keys of one tenant share it. A tenant's
``rate_limit_rps``/``rate_limit_burst`` replace the server's for it, and limit it even when
``server.rate_limit_enabled`` is false; the others get the server's limit when that is enabled.

``rate_limit_rps`` (sustained rate) and ``rate_limit_burst`` (most requests at once) describe a token
bucket; flask-limiter counts in windows. The mapping is one moving-window limit::

    burst requests per ceil(burst / rps) seconds      (burst >= rps)
    rps requests per 1 second                         (burst < rps)

A moving window counts the requests of the last W seconds at every instant, so: a client may send
``burst`` requests at once; over any longer stretch it averages at most ``rps`` per second (exactly
``rps`` when burst is a multiple of it, a little less otherwise: 25/10 gives 25 per 3 s); it never
gets more than ``burst`` in any W-second span, which a token bucket would allow after a pause. With
the defaults (10 rps, burst 20) that is "20 per 2 seconds".

Counters live in ``rate_limit_storage_uri``: ``memory://`` counts per process (one gunicorn worker
= its own counters, so W workers admit up to W times the limit), ``redis://host:port`` counts once
for all workers and hosts. If Redis becomes unreachable, each worker falls back to counting in
memory and goes back to Redis when it answers again; requests are never refused or failed because
the storage is down. A Redis that accepts connections but does not answer (hung, overloaded) is
given up on after a second, as by the tenant run quota (:mod:`clinvk.cluster_gate`).

Exempt: CORS preflights, ``/health``, ``/metrics``, ``/docs`` and ``/openapi.json``. A refused
request gets 429 in its API's error shape with ``Retry-After``; every limited response carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.storage import storage_from_string

from ...cluster_gate import REDIS_TIMEOUTS, counts_in_redis
from ...config import Config
from ...redact import redact_uri as redact
from ...tenants import Tenant
from .context import settings
from .errors import ApiError, converts
from .security import is_open_path, is_preflight

EXEMPT_PATHS = frozenset({"/metrics"})


class RateLimitConfigError(RuntimeError):
    """The rate-limit settings cannot be used (e.g. a Redis URI without the redis package)."""


def limit_for(rps: int, burst: int) -> tuple[int, int]:
    """(requests, window seconds) for a sustained ``rps`` with bursts of ``burst``."""
    rps = max(1, int(rps))
    amount = max(int(burst), rps)
    return amount, max(1, math.ceil(amount / rps))


def limit_string(rps: int, burst: int) -> str:
    amount, window = limit_for(rps, burst)
    return f"{amount} per {window} second"


def keyed_tenant() -> Tenant | None:
    """The tenant of the request's API key; None without one (keys off, or a missing/wrong key)."""
    return getattr(g, "tenant", None) if getattr(g, "api_key_id", None) else None


def rate_key() -> str:
    tenant = keyed_tenant()
    if tenant is not None:
        return f"tenant:{tenant.name}"
    return f"ip:{getattr(g, 'client_ip', None) or request.remote_addr or 'unknown'}"


def applicable(config: Config) -> tuple[int, int, str] | None:
    """(rps, burst, the setting that sets them) for this request, or None when it is not limited."""
    tenant = keyed_tenant()
    if tenant is not None and tenant.name in config.tenants and config.tenants[tenant.name].rate_limit_rps:
        return tenant.rate_limit_rps, tenant.rate_limit_burst, f"tenants.{tenant.name}.rate_limit_rps"
    server = config.server
    if server.rate_limit_enabled:
        return server.rate_limit_rps, server.rate_limit_burst, "server.rate_limit_rps"
    return None


def check_storage_uri(uri: str) -> None:
    """Fail at startup with a clear message rather than at the first request."""
    try:
        storage_from_string(uri)
    except Exception as exc:  # limits raises ConfigurationError for unknown schemes/missing drivers
        hint = " (install the Python package 'redis')" if uri.startswith(("redis", "rediss")) else ""
        raise RateLimitConfigError(f"server.rate_limit_storage_uri {redact(uri)!r} cannot be used: "
                                   f"{exc}{hint}") from None


def init_rate_limits(app: Flask, config: Config) -> Limiter | None:
    """Install the limiter (when the server or a tenant has a limit). Call after the security hooks,
    before auth enforcement."""
    server = config.server
    if not server.rate_limit_enabled and not any(t.rate_limit_rps for t in config.tenants.values()):
        return None
    check_storage_uri(server.rate_limit_storage_uri)

    def limit() -> str:
        rps, burst, _ = applicable(config) or (server.rate_limit_rps, server.rate_limit_burst, "")
        return limit_string(rps, burst)

    @app.after_request
    def _retry_after_only_when_refused(response: Response) -> Response:
        # Registered before the limiter's own after_request, so it runs after it (Flask runs them
        # in reverse): flask-limiter writes Retry-After on every response; keep it where it means
        # something, and never 0.
        retry = response.headers.get("Retry-After")
        if retry is not None:
            if response.status_code in (429, 503):
                if retry.isdigit() and int(retry) < 1:
                    response.headers["Retry-After"] = "1"
            else:
                del response.headers["Retry-After"]
        return response

    limiter = Limiter(
        key_func=rate_key,
        application_limits=[limit],  # called per request: the tenant's own limit or the server's
        strategy="moving-window",
        storage_uri=server.rate_limit_storage_uri,
        # Gives up on a hung Redis as soon as the run quota does (the client's default waits 5 s).
        storage_options=dict(REDIS_TIMEOUTS) if counts_in_redis(config) else {},
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        # A storage error while another thread is switching to the fallback must not become a 500.
        swallow_errors=True,
        key_prefix="clinvk",
        retry_after="delta-seconds",
    )

    @limiter.request_filter
    def _exempt() -> bool:
        return (is_preflight() or is_open_path(request.path) or request.path in EXEMPT_PATHS
                or applicable(config) is None)

    limiter.init_app(app)
    app.extensions["clinvk.limiter"] = limiter

    return limiter


@converts(RateLimitExceeded)
def _too_many(exc: RateLimitExceeded) -> ApiError:
    server = settings()
    rps, burst, setting = applicable(current_app.config["CLINVK"]) or (
        server.rate_limit_rps, server.rate_limit_burst, "server.rate_limit_rps")
    amount, window = limit_for(rps, burst)
    current = current_app.extensions["clinvk.limiter"].current_limit
    wait = max(1, int(current.reset_at - time.time())) if current is not None else window
    tenant = keyed_tenant()
    who = f"tenant {tenant.name!r}" if tenant is not None else f"client {getattr(g, 'client_ip', '?')}"
    return ApiError(429, f"rate limit exceeded for {who}: at most {amount} requests per {window} s "
                         f"({setting}); retry in {wait} s", code="rate_limit_exceeded",
                    headers={"Retry-After": str(wait)})
