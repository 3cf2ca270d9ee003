"""The Flask application factory: one app, one blueprint per API style (:mod:`.native`, :mod:`.openai`,
:mod:`.anthropic`), and the HTTP plumbing they share (:mod:`.http`)."""

from __future__ import annotations

import logging
import time

from flask import Flask

from ..apikeys import ApiKeys
from ..cluster_gate import RedisGate, counts_in_redis, redis_client
from ..config import Config, load_config
from ..gate import SharedGate, TenantGates, tenant_label
from ..jobs.runner import JobRunner
from ..rundir import server_run_dir
from ..service import Service
from ..sessions import SessionStore
from ..tenants import Tenants
from ..warm.pool import WarmPool, register_shutdown
from . import anthropic, native, openai
from .anthropic import errors as anthropic_errors
from .http import docs, errors, meta
from .http.cors import init_cors
from .http.flaskapp import App
from .http.metrics import init_metrics
from .http.observe import init_observability
from .http.origin import init_request_origin
from .http.ratelimit import init_rate_limits
from .http.security import init_auth_enforcement, init_security
from .native import errors as native_errors
from .openai import errors as openai_errors

log = logging.getLogger(__name__)

def gate_dir(config: Config):
    """Where the run slots of this server (host:port) live, shared by all its gunicorn workers."""
    return server_run_dir(config) / "gate"


def start_jobs(service: Service) -> JobRunner:
    """The job runner; jobs whose server went away are marked interrupted, old finished ones removed."""
    runner = JobRunner(service)
    try:
        interrupted = runner.recover()
        if interrupted:
            log.warning("marked %d jobs interrupted: the server running them went away", interrupted)
        if service.config.session.retention_days > 0:
            runner.store.clean_jobs(service.config.session.retention_days)
    except Exception:
        log.exception("job recovery at start-up failed")
    return runner


def tenant_gates(config: Config) -> TenantGates:
    """Each tenant's share of the run slots, shared by all workers like the server's gate; with limits in
    Redis, a cap set in the config counts across hosts."""
    server = config.server

    def make(name: str, limit: int) -> SharedGate:
        return SharedGate(limit, server.max_queued_runs, server.queue_timeout_secs,
                          gate_dir(config).parent / "tenants" / name / str(limit), label=tenant_label(name))

    if not counts_in_redis(config):
        return TenantGates(make, server.max_concurrent_runs)
    client = redis_client(server.rate_limit_storage_uri)

    def make_cluster(name: str, limit: int) -> RedisGate:
        # Without Redis, the cap counts among this host's workers: never more than the host's slots.
        fallback = make(name, min(limit, server.max_concurrent_runs))
        return RedisGate(client, name, limit, server.max_queued_runs, server.queue_timeout_secs,
                         lease_secs=server.quota_lease_secs, fallback=fallback, label=tenant_label(name))

    return TenantGates(make, server.max_concurrent_runs, make_cluster)


def create_app(config: Config | None = None, *, store: SessionStore | None = None,
               api_keys: ApiKeys | None = None) -> Flask:
    """Build the app. Without ``config`` the usual file + environment config is loaded.

    ``api_keys``: keys already loaded (``clinvk serve`` loads them once in the master); by default
    they come from the config, and a gopass failure raises :class:`clinvk.apikeys.ApiKeyError`.
    """
    config = config if config is not None else load_config()
    api_keys = api_keys if api_keys is not None else ApiKeys.from_config(config)
    app = App(__name__)
    app.config["CLINVK"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_request_body_bytes or None
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    server = config.server
    gate = SharedGate(server.max_concurrent_runs, server.max_queued_runs, server.queue_timeout_secs, gate_dir(config))
    tenants = Tenants(config, api_keys.tenant_names())
    service = Service(config, store, gate, tenant_gates(config))
    if config.run.sandbox == "auto" and not service.sandbox.active:
        log.warning("CLI runs are not sandboxed: %s", service.sandbox.reason)
    if config.run.warm_pool.enabled:
        service.warm_pool = WarmPool(config.run.warm_pool)
        register_shutdown(service.warm_pool)
    app.extensions["clinvk.service"] = service
    app.extensions["clinvk.started"] = time.monotonic()
    if config.session.retention_days > 0:
        try:
            removed = service.clean_sessions(config.session.retention_days)
            if removed:
                log.info("removed %d sessions older than %d days", removed, config.session.retention_days)
        except Exception:
            log.exception("session retention cleanup failed")
    app.extensions["clinvk.jobs"] = start_jobs(service)
    # Each API blueprint renders its own errors; this handler is for what no blueprint sees (unknown
    # paths, wrong methods, the meta routes).
    errors.init_app(app, native_errors.render, {"/openai/": openai_errors.render,
                                                "/anthropic/": anthropic_errors.render})
    # Hook order matters (before_request runs in this order, after_request in reverse): request id
    # and timing, Host and cross-site refusal, client IP + body limit + key check, rate limit (keyed by the key), then the 401.
    init_observability(app)
    init_request_origin(app, config)
    init_security(app, config, api_keys, tenants)
    init_rate_limits(app, config)
    init_auth_enforcement(app)
    init_cors(app, config)
    if server.metrics_enabled:
        init_metrics(app, service)
    for blueprint in (docs.bp, native.bp, openai.bp, anthropic.bp, meta.bp):
        app.register_blueprint(blueprint)
    return app
