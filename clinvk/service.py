"""Requests become runs here: validation, config defaults and the command line of one prompt or resume.

Used by the HTTP views and the command line alike; knows nothing about Flask. :meth:`Service.prepare`
returns a :class:`~clinvk.lifecycle.PreparedRun`, whose ``execute()`` / ``start_stream()`` run it
through the one run lifecycle (:mod:`clinvk.lifecycle`). Orchestration (parallel, chain, compare)
builds on the same two calls.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import shlex
import shutil
import time
from typing import Any, Callable, NoReturn

from .backends import BACKENDS, Backend, RunSpec, UnsupportedOption
from .cli_env import CliEnvironments
from .config import BACKEND_NAMES, BackendConfig, Config
from .errors import Conflict, NotFound, ServiceError, Unavailable
from .events import RunResult
from .gate import ConcurrencyGate, Gate, TenantGates
from .homes import CliHomes
from .sandbox import SandboxStatus
from .sandbox import resolve as resolve_sandbox
from .lifecycle import CancelToken, PreparedRun, StreamingRun
from .modelname import model_error
from .sessions import Session, SessionStore, open_store
from .sessions.turns import TurnLeases
from .scratch import is_scratch, prune_scratch
from .specs import PromptRequest
from .tenants import Tenant, local_tenant
from .warm import WarmPool
from .workdir import WorkdirError, is_under, resolve_workdir

__all__ = ["CancelToken", "Conflict", "NotFound", "PreparedRun", "PromptRequest", "Service", "ServiceError",
           "StreamingRun", "Unavailable"]

log = logging.getLogger(__name__)

AVAILABILITY_TTL_SECS = 5.0
CONFIGURED = "<configured>"  # what a dry run shows in place of an operator-configured value


class _Fields:
    """Names request fields in errors, below ``prefix`` (``tasks[3].``) when the request is part of a batch."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def fail(self, cls: type[ServiceError], message: str, name: str | None) -> NoReturn:
        raise cls(message, f"{self.prefix}{name}" if name else self.prefix.rstrip(".") or None)


class Service:
    """The service's public API: :meth:`prepare`, :meth:`backends`, :meth:`executable`, :meth:`notify`,
    and the ``config``, ``store`` and ``gate`` it runs with.

    A service acts for one tenant (:attr:`tenant`; :func:`~clinvk.tenants.local_tenant` unless
    :meth:`for_tenant` made it): the sessions it finds and creates are that tenant's, its runs take
    the tenant's own gate (:attr:`tenant_gates`) before the server's."""

    def __init__(self, config: Config, store: SessionStore | None = None, gate: Gate | None = None,
                 tenant_gates: TenantGates | None = None):
        """``gate`` defaults to one counting this process's runs (the server passes one shared by its
        workers); ``tenant_gates`` None: no per-tenant cap (the command line, one tenant)."""
        self.config = config
        self.store = store if store is not None else open_store(config.session_store, pool_size=config.session.store_pool_size)
        server = config.server
        self.gate = gate if gate is not None else ConcurrencyGate(
            server.max_concurrent_runs, server.max_queued_runs, server.queue_timeout_secs)
        self.turns = TurnLeases(self.store, config.session.turn_lease_secs)  # one turn at a time per session
        self._available: dict[str, tuple[float, str | None]] = {}
        self._environments = CliEnvironments()
        # Called as observer(backend, outcome, duration_secs) when a CLI run ends (metrics).
        self.observers: list[Callable[[str, str, float, str], None]] = []
        self.tenant: Tenant = local_tenant(config)
        self.tenant_gates = tenant_gates
        self.homes = CliHomes(config.home)
        # Raises SandboxUnavailable for run.sandbox: bwrap where bubblewrap cannot run.
        self.sandbox: SandboxStatus = resolve_sandbox(config.run.sandbox)
        # CLIs started ahead for ephemeral runs; the server sets one (run.warm_pool), the command line not.
        self.warm_pool: WarmPool | None = None

    def delete_session(self, session_id: str) -> Session:
        """Delete one of this tenant's sessions (full id or prefix) and its CLI home."""
        session = self.store.delete(session_id, owner=self.tenant.owner_filter)
        self.homes.remove(session.id)
        return session

    def clean_sessions(self, older_than_days: float) -> int:
        """Retention: delete sessions unused for this long, their homes and scratch directories, and
        those left without a session."""
        removed = self.store.clean(older_than_days)
        self.homes.sweep(self._session_exists)
        prune_scratch(self.config.home, self.store)
        return removed

    def _session_exists(self, session_id: str) -> bool:
        try:
            self.store.get(session_id)
        except (LookupError, ValueError):
            return False
        return True

    def for_tenant(self, tenant: Tenant) -> "Service":
        """This service acting for ``tenant`` (a shallow copy: config, store, gates and caches are shared)."""
        scoped = copy.copy(self)
        scoped.tenant = tenant
        return scoped

    def tenant_gate(self) -> Gate | None:
        """The gate of this service's tenant, or None when only the server's gate applies."""
        if self.tenant_gates is None:
            return None
        tenant = self.tenant
        return self.tenant_gates.get(tenant.name, tenant.max_concurrent_runs, tenant.configured_max_runs)

    # -- backends --------------------------------------------------------------------------------

    def environment(self, name: str) -> dict[str, str]:
        """The environment of backend ``name``'s CLI (:mod:`clinvk.cli_env`), from the server's as it is now."""
        return self._environments.get(name, self.config.backend(name), os.environ)

    def executable(self, name: str) -> str | None:
        """Path of the backend's CLI, or None. Cached briefly: PATH scans are not free on a hot path."""
        now = time.monotonic()
        cached = self._available.get(name)
        if cached and now - cached[0] < AVAILABILITY_TTL_SECS:
            return cached[1]
        backend_config = self.config.backend(name)
        path = None
        if backend_config.enabled:
            path = shutil.which(backend_config.command or name, path=self.environment(name).get("PATH"))
        self._available[name] = (now, path)
        return path

    def backends(self) -> list[dict[str, Any]]:
        """Every known backend with its availability, in a stable order."""
        result = []
        for name in BACKEND_NAMES:
            backend_config = self.config.backend(name)
            path = self.executable(name)
            entry: dict[str, Any] = {"name": name, "available": path is not None, "enabled": backend_config.enabled,
                                     "command": backend_config.command or name}
            if backend_config.model:
                entry["model"] = backend_config.model
            result.append(entry)
        return result

    def notify(self, backend: str, result: RunResult) -> None:
        """Tell the observers (metrics) that a run of ``backend`` for this tenant ended with ``result``."""
        outcome = "timeout" if result.timed_out else "cancelled" if result.cancelled else \
            "error" if (result.exit_code or result.error) else "success"
        for observer in self.observers:
            try:
                observer(backend, outcome, result.duration_ms / 1000, self.tenant.name)
            except Exception:  # an observer must never break a run
                log.exception("run observer failed")

    # -- preparing -------------------------------------------------------------------------------

    def prepare(self, request: PromptRequest, *, field_prefix: str = "") -> PreparedRun:
        """Validate a request and build its command line. Raises :class:`ServiceError` naming the field."""
        fields = _Fields(field_prefix)
        if not request.prompt or not request.prompt.strip():
            fields.fail(ServiceError, "prompt must not be empty", "prompt")
        session = self._session(request, fields)
        name = session.backend if session else (request.backend or self.config.default_backend)
        if name not in BACKENDS:
            fields.fail(ServiceError, f"unknown backend {name!r} (known: {', '.join(BACKEND_NAMES)})", "backend")
        backend, backend_config = BACKENDS[name], self.config.backend(name)
        spec = self._run_spec(request, backend, backend_config, session, self._workdir(request, session, fields))
        self._check_arguments(spec, backend, fields, backend_config.allow_dangerous_flags)
        dry_run = request.dry_run or self.config.unified_flags.dry_run
        executable = self._executable(name, backend_config, dry_run, fields)
        try:
            invocation = backend.build(spec, executable, backend_config.allow_dangerous_flags)
        except UnsupportedOption as exc:
            fields.fail(ServiceError, str(exc), exc.field)
        for note in invocation.notes:
            log.info("%s: %s", name, note)
        prepared = PreparedRun(self, backend, spec, request, invocation, dry_run=dry_run,
                               session=session, notes=list(invocation.notes))
        if dry_run:
            prepared.shown_command = self._shown_command(backend, spec, request, backend_config.allow_dangerous_flags)
        return prepared

    @staticmethod
    def _shown_command(backend: Backend, spec: RunSpec, request: PromptRequest, allow_dangerous: bool) -> str:
        """The command line a dry run shows any key holder: the operator's configuration (system prompt,
        allowed tools, extra_flags, the executable's path) reads ``<configured>``; the request's own values stay."""
        shown = dataclasses.replace(
            spec, system_prompt=spec.system_prompt if request.system_prompt else (spec.system_prompt and CONFIGURED),
            allowed_tools=spec.allowed_tools and CONFIGURED, operator_flags=[CONFIGURED for _ in spec.operator_flags])
        return shlex.join(backend.build(shown, backend.name, allow_dangerous).argv)

    def _session(self, request: PromptRequest, fields: _Fields) -> Session | None:
        """The stored session a request continues, checked against the request; None for a new run."""
        if not request.session_id:
            return None
        if request.ephemeral:
            fields.fail(ServiceError, "ephemeral runs cannot continue a session", "ephemeral")
        try:
            session = self.store.get(request.session_id, owner=self.tenant.owner_filter)
        except LookupError as exc:
            fields.fail(NotFound, str(exc), "session_id")
        except ValueError as exc:
            fields.fail(ServiceError, str(exc), "session_id")
        if request.backend and request.backend != session.backend:
            fields.fail(ServiceError, f"session {session.id} belongs to backend {session.backend!r}, "
                                      f"not {request.backend!r}", "backend")
        if not session.backend_session_id:
            fields.fail(Conflict, f"session {session.id} cannot be continued: its backend reported no session id",
                        "session_id")
        return session

    def _workdir(self, request: PromptRequest, session: Session | None, fields: _Fields) -> str:
        """A continued session keeps its workdir; a new run's is checked against the workdir policy, and so
        is a continued session's again (it, or a directory above it, may have become a symlink to a place
        the policy refuses since the first turn), unless it is the session's own scratch dir."""
        if session:
            if request.workdir and request.workdir != session.working_dir:
                fields.fail(ServiceError, f"session {session.id} runs in "
                                          f"{session.working_dir or 'the server directory'}; "
                                          "a continued session cannot change its workdir", "workdir")
            if session.working_dir and not is_scratch(self.config.home, session.working_dir):
                self._allowed_workdir(session.working_dir, fields)
            return session.working_dir
        if not request.workdir:
            return ""
        return self._allowed_workdir(request.workdir, fields)

    def _allowed_workdir(self, path: str, fields: _Fields) -> str:
        """``path`` resolved, if the server's workdir policy and this tenant's prefixes allow it."""
        try:
            # clinvk's own state (sessions, keys' run slots, scratch dirs) is never a workdir.
            workdir = resolve_workdir(path, self.config.server.allowed_workdir_prefixes,
                                      [*self.config.server.blocked_workdir_prefixes, str(self.config.home)])
        except WorkdirError as exc:
            fields.fail(ServiceError, f"workdir {exc}", "workdir")
        own = self.tenant.allowed_workdir_prefixes
        if own and not any(is_under(workdir, os.path.realpath(p)) for p in own):
            fields.fail(ServiceError, f"workdir not allowed: {workdir} is outside the allowed prefixes of "
                                      f"tenant {self.tenant.name!r} ({', '.join(own)})", "workdir")
        return workdir

    def _stream(self, request: PromptRequest) -> bool:
        if request.stream is not None:
            return request.stream
        return self.config.output.format == "stream-json"

    def _run_spec(self, request: PromptRequest, backend: Backend, backend_config: BackendConfig,
                  session: Session | None, workdir: str) -> RunSpec:
        """The unified options of the run: the request's, else the backend's config, else unified_flags."""
        unified = self.config.unified_flags
        approval = request.approval_mode if request.approval_mode not in ("", "default") else \
            (backend_config.approval_mode or unified.approval_mode)
        sandbox = request.sandbox_mode if request.sandbox_mode not in ("", "default") else \
            (backend_config.sandbox_mode or unified.sandbox_mode)
        return RunSpec(
            prompt=request.prompt,
            model=request.model or (session.model if session and session.model else "") or backend_config.model,
            workdir=workdir,
            approval_mode=approval,
            sandbox_mode=sandbox,
            max_turns=request.max_turns or unified.max_turns,
            system_prompt=request.system_prompt or backend_config.system_prompt,
            allowed_tools=backend_config.allowed_tools if backend.name == "claude" else "",
            extra=list(request.extra),
            operator_flags=list(backend_config.extra_flags),
            stream=self._stream(request),
            ephemeral=request.ephemeral,
            resume_id=session.backend_session_id if session else None,
            verbose=request.verbose or unified.verbose,
        )

    @staticmethod
    def _check_arguments(spec: RunSpec, backend: Backend, fields: _Fields, allow_dangerous: bool) -> None:
        # Values that become command-line arguments: a NUL byte cannot be passed to exec(), and a model
        # name must not read as a flag.
        for option, value in (("model", spec.model), ("system_prompt", spec.system_prompt)):
            if "\x00" in value:
                fields.fail(ServiceError, f"{option} must not contain NUL bytes", option)
        problem = model_error(spec.model)
        if problem:
            fields.fail(ServiceError, f"model {spec.model!r} {problem}", "model")
        for index, flag in enumerate(spec.extra):
            if "\x00" in flag:
                fields.fail(ServiceError, "extra flags must not contain NUL bytes", f"extra[{index}]")
        try:
            backend.check_extra(spec.extra, allow_dangerous)
        except UnsupportedOption as exc:
            fields.fail(ServiceError, str(exc), exc.field)

    def _executable(self, name: str, backend_config: BackendConfig, dry_run: bool, fields: _Fields) -> str:
        """The CLI to run; a dry run may name one that is not installed."""
        executable = self.executable(name)
        if executable is not None:
            return executable
        if not dry_run:
            reason = "is disabled in the config" if not backend_config.enabled else \
                f"is not available: {backend_config.command or name!r} was not found on PATH"
            fields.fail(Unavailable, f"backend {name!r} {reason}", "backend")
        return backend_config.command or name
