"""Prometheus metrics at ``/metrics`` (when ``server.metrics_enabled``), right across gunicorn workers.

Under ``clinvk serve`` every worker writes its numbers to prometheus_client's multiprocess
directory (``PROMETHEUS_MULTIPROC_DIR``, set and wiped by the master before the workers start; the
``child_exit`` hook marks a dead worker's files), and ``/metrics`` merges them all, whichever worker
answers. Without that variable (tests, a single process) the app keeps its own registry.

Series:

- ``clinvk_http_requests_total{method, route, status}`` — route is the URL rule
  (``/api/v1/sessions/<session_id>``), never the raw path, so ids don't explode the label set;
  unmatched paths are ``<unmatched>``. Refused requests (401, 413, 429) are counted too.
- ``clinvk_http_request_duration_seconds{method, route}`` — until the response starts: for a stream,
  the time to its headers, not its length. The response body is never wrapped or buffered.
- ``clinvk_cli_runs_total{backend, outcome, tenant}`` — outcome ``success``, ``error``, ``timeout``,
  ``cancelled``; tenant is the API key's tenant (``local`` without keys). Tenants are configured by the
  operator and few, so the label set stays small.
- ``clinvk_cli_run_duration_seconds{backend, tenant}``.
- ``clinvk_warm_pool_events_total{backend, event}`` — event ``hit`` (a run got a warm CLI), ``miss``
  (it spawned cold) or ``discard`` (a warm CLI ended unused: idle expiry, memory bound, it died).
- ``clinvk_cli_runs_in_flight`` and ``clinvk_cli_runs_queued`` — summed over the live workers.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess, values)

from ...service import Service

log = logging.getLogger(__name__)

REQUEST_BUCKETS = tuple(0.001 * 2 ** k for k in range(15))  # 1 ms .. 16 s
RUN_BUCKETS = tuple(0.1 * 2 ** k for k in range(13))  # 0.1 s .. 6.8 min

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

bp = Blueprint("metrics", __name__)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess and values.ValueClass is values.MutexValue:
            # prometheus_client chose its value class when it was first imported, before the
            # variable was set (an embedding program imported it early): choose again.
            values.ValueClass = values.get_value_class()
        registry = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.requests = Counter("clinvk_http_requests_total", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("clinvk_http_request_duration_seconds",
                                 "Time until the response starts (headers), by route",
                                 ["method", "route"], buckets=REQUEST_BUCKETS, registry=registry)
        self.runs = Counter("clinvk_cli_runs_total", "Backend CLI runs that ended, by outcome",
                            ["backend", "outcome", "tenant"], registry=registry)
        self.run_duration = Histogram("clinvk_cli_run_duration_seconds", "Backend CLI run duration",
                                      ["backend", "tenant"], buckets=RUN_BUCKETS, registry=registry)
        self.warm_pool = Counter("clinvk_warm_pool_events_total", "Warm CLI pool hits, misses and discards",
                                 ["backend", "event"], registry=registry)
        self.in_flight = Gauge("clinvk_cli_runs_in_flight", "Backend CLI runs in progress",
                               registry=registry, multiprocess_mode="livesum")
        self.queued = Gauge("clinvk_cli_runs_queued", "Requests waiting for a run slot",
                            registry=registry, multiprocess_mode="livesum")

    def observe_run(self, backend: str, outcome: str, duration_secs: float, tenant: str) -> None:
        self.runs.labels(backend, outcome, tenant).inc()
        self.run_duration.labels(backend, tenant).observe(max(0.0, duration_secs))

    def observe_gate(self, running: int, queued: int) -> None:
        self.in_flight.set(running)
        self.queued.set(queued)

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


@bp.get("/metrics")
def metrics():
    data = current_app.extensions["clinvk.metrics"].exposition()
    return Response(data, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def init_metrics(app: Flask, service: Service) -> Metrics:
    metrics = Metrics()
    app.extensions["clinvk.metrics"] = metrics
    service.observers.append(metrics.observe_run)
    service.gate.listeners.append(metrics.observe_gate)
    metrics.observe_gate(service.gate.running, service.gate.queued)
    if service.warm_pool is not None:
        service.warm_pool.listeners.append(lambda backend, event: metrics.warm_pool.labels(backend, event).inc())
    app.register_blueprint(bp)

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        route = rule.rule if rule is not None else "<unmatched>"
        started = getattr(g, "started", None)
        method = request.method if request.method in KNOWN_METHODS else "OTHER"  # bounded labels
        metrics.requests.labels(method, route, str(response.status_code)).inc()
        if started is not None:
            metrics.latency.labels(method, route).observe(time.perf_counter() - started)
        return response

    return metrics
