"""Prompt, resume and streaming runs — the one place where requests become CLI runs.

Used by the HTTP views and the command line alike; knows nothing about Flask. Orchestration
(parallel, chain, compare) builds on :meth:`Service.prepare` and :meth:`PreparedRun.execute`.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .backends import BACKENDS, Backend, RunSpec, UnsupportedOption
from .backends.base import ParsedOutput
from .config import BACKEND_NAMES, Config
from .events import Event, RunResult, TokenUsage
from .gate import ConcurrencyGate, Gate
from .runner import ProcessOutcome, RunningProcess, StartError
from .sessions import Session, SessionStore
from .workdir import WorkdirError, resolve_workdir

log = logging.getLogger(__name__)

AVAILABILITY_TTL_SECS = 5.0


class ServiceError(Exception):
    """A request the service refuses. ``field`` is the request field at fault (None: the request as a whole)."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class Unavailable(ServiceError):
    status, code = 503, "backend_unavailable"


@dataclass
class PromptRequest:
    """Unified prompt options, as the REST API and the command line take them."""

    prompt: str
    backend: str = ""
    model: str = ""
    workdir: str = ""
    session_id: str = ""
    ephemeral: bool = False
    approval_mode: str = "default"
    sandbox_mode: str = "default"
    output_format: str = "default"
    max_tokens: int = 0
    max_turns: int = 0
    system_prompt: str = ""
    verbose: bool = False
    dry_run: bool = False
    extra: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@dataclass
class PreparedRun:
    """A validated run, ready to execute once or to stream once."""

    service: "Service"
    backend: Backend
    spec: RunSpec
    request: PromptRequest
    executable: str
    env: dict[str, str]
    persist: bool
    dry_run: bool
    session: Session | None = None
    notes: list[str] = field(default_factory=list)
    _invocation: Any = None

    @property
    def stream(self) -> bool:
        return self.spec.stream

    @property
    def session_id(self) -> str | None:
        return self.session.id if self.session else None

    @property
    def invocation(self):
        return self._invocation

    def command_line(self) -> str:
        return shlex.join(self._invocation.argv)

    def execute(self, cancel: "CancelToken | None" = None) -> RunResult:
        """Run to completion (non-streaming) and record the turn."""
        return self.service._execute(self, cancel)

    def start_stream(self) -> "StreamingRun":
        """Take a run slot and spawn the CLI now, so a refusal can still be an HTTP error."""
        return StreamingRun(self)


class CancelToken:
    """Lets another thread (fail-fast, shutdown) end a run that is in progress."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._process: RunningProcess | None = None
        self._lock = threading.Lock()

    def attach(self, process: RunningProcess) -> None:
        with self._lock:
            self._process = process
            reason = self.reason
        if reason:
            process.terminate(reason)

    def cancel(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason
            process = self._process
        if process is not None:
            process.terminate(reason)


class Service:
    def __init__(self, config: Config, store: SessionStore | None = None, gate: Gate | None = None):
        """``gate`` defaults to one counting this process's runs (the server passes one shared by its workers)."""
        self.config = config
        self.store = store if store is not None else SessionStore(config.sessions_db)
        server = config.server
        self.gate = gate if gate is not None else ConcurrencyGate(
            server.max_concurrent_runs, server.max_queued_runs, server.queue_timeout_secs)
        self._env = {name: self._environment(name) for name in BACKEND_NAMES}
        self._available: dict[str, tuple[float, str | None]] = {}
        # Called as observer(backend, outcome, duration_secs) when a CLI run ends (metrics).
        self.observers: list[Callable[[str, str, float], None]] = []

    # -- backends --------------------------------------------------------------------------------

    def _environment(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in BACKENDS[name].default_env.items():
            env.setdefault(key, value)
        env.update(self.config.backend(name).env)
        return env

    def executable(self, name: str) -> str | None:
        """Path of the backend's CLI, or None. Cached briefly: PATH scans are not free on a hot path."""
        now = time.monotonic()
        cached = self._available.get(name)
        if cached and now - cached[0] < AVAILABILITY_TTL_SECS:
            return cached[1]
        backend_config = self.config.backend(name)
        path = None
        if backend_config.enabled:
            path = shutil.which(backend_config.command or name, path=self._env[name].get("PATH"))
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

    # -- preparing -------------------------------------------------------------------------------

    def prepare(self, request: PromptRequest, *, persist: bool = True, field_prefix: str = "") -> PreparedRun:
        """Validate a request and build its command line. Raises :class:`ServiceError` naming the field."""
        def fail(cls, message, name):
            raise cls(message, f"{field_prefix}{name}" if name else field_prefix.rstrip(".") or None)

        if not request.prompt or not request.prompt.strip():
            fail(ServiceError, "prompt must not be empty", "prompt")
        session = None
        if request.session_id:
            if request.ephemeral:
                fail(ServiceError, "ephemeral runs cannot continue a session", "ephemeral")
            try:
                session = self.store.get(request.session_id)
            except LookupError as exc:
                fail(NotFound, str(exc), "session_id")
            except ValueError as exc:
                fail(ServiceError, str(exc), "session_id")
            if request.backend and request.backend != session.backend:
                fail(ServiceError, f"session {session.id} belongs to backend {session.backend!r}, "
                                   f"not {request.backend!r}", "backend")
            if not session.backend_session_id:
                fail(Conflict, f"session {session.id} cannot be continued: its backend reported no session id",
                     "session_id")
        name = session.backend if session else (request.backend or self.config.default_backend)
        if name not in BACKENDS:
            fail(ServiceError, f"unknown backend {name!r} (known: {', '.join(BACKEND_NAMES)})", "backend")
        backend = BACKENDS[name]
        backend_config = self.config.backend(name)

        fmt = (request.output_format or "default").strip().lower()
        if fmt == "default":
            fmt = self.config.output.format if self.config.output.format != "default" else "json"

        workdir = ""
        if session:
            if request.workdir and request.workdir != session.working_dir:
                fail(ServiceError, f"session {session.id} runs in {session.working_dir or 'the server directory'}; "
                                   "a continued session cannot change its workdir", "workdir")
            workdir = session.working_dir
        elif request.workdir:
            try:
                workdir = resolve_workdir(request.workdir, self.config.server.allowed_workdir_prefixes,
                                          self.config.server.blocked_workdir_prefixes)
            except WorkdirError as exc:
                fail(ServiceError, f"workdir {exc}", "workdir")

        unified = self.config.unified_flags
        approval = request.approval_mode if request.approval_mode not in ("", "default") else \
            (backend_config.approval_mode or unified.approval_mode)
        sandbox = request.sandbox_mode if request.sandbox_mode not in ("", "default") else \
            (backend_config.sandbox_mode or unified.sandbox_mode)
        spec = RunSpec(
            prompt=request.prompt,
            model=request.model or (session.model if session and session.model else "") or backend_config.model,
            workdir=workdir,
            approval_mode=approval,
            sandbox_mode=sandbox,
            max_turns=request.max_turns or unified.max_turns,
            system_prompt=request.system_prompt or backend_config.system_prompt,
            allowed_tools=backend_config.allowed_tools if name == "claude" else "",
            extra=list(request.extra),
            operator_flags=list(backend_config.extra_flags),
            stream=fmt == "stream-json",
            ephemeral=request.ephemeral or not persist,
            resume_id=session.backend_session_id if session else None,
            verbose=request.verbose or unified.verbose,
        )
        # Values that become command-line arguments: a NUL byte cannot be passed to exec().
        for option, value in (("model", spec.model), ("system_prompt", spec.system_prompt)):
            if "\x00" in value:
                fail(ServiceError, f"{option} must not contain NUL bytes", option)
        for index, flag in enumerate(spec.extra):
            if "\x00" in flag:
                fail(ServiceError, "extra flags must not contain NUL bytes", f"extra[{index}]")
        try:
            backend.check_extra(spec.extra)
        except UnsupportedOption as exc:
            fail(ServiceError, str(exc), exc.field)
        executable = self.executable(name)
        dry_run = request.dry_run or unified.dry_run
        if executable is None:
            if not dry_run:
                reason = "is disabled in the config" if not backend_config.enabled else \
                    f"is not available: {backend_config.command or name!r} was not found on PATH"
                fail(Unavailable, f"backend {name!r} {reason}", "backend")
            executable = backend_config.command or name
        try:
            invocation = backend.build(spec, executable, backend_config.allow_dangerous_flags)
        except UnsupportedOption as exc:
            fail(ServiceError, str(exc), exc.field)
        prepared = PreparedRun(self, backend, spec, request, executable, self._env[name],
                               persist=persist and not spec.ephemeral, dry_run=dry_run, session=session,
                               notes=list(invocation.notes), _invocation=invocation)
        for note in invocation.notes:
            log.info("%s: %s", name, note)
        return prepared

    def _open_session(self, prepared: PreparedRun) -> None:
        if prepared.session is None and prepared.persist and not prepared.dry_run:
            request = prepared.request
            prepared.session = self.store.create(
                backend=prepared.backend.name, working_dir=prepared.spec.workdir, model=request.model or None,
                initial_prompt=request.prompt,
                tags=list(self.config.session.default_tags) + list(request.tags),
                metadata=dict(request.metadata))

    # -- running ---------------------------------------------------------------------------------

    def _spawn(self, prepared: PreparedRun) -> RunningProcess:
        """Start the CLI; the backend's after_run hook runs when the process is closed."""
        backend = prepared.backend
        backend.before_run(prepared.env)
        try:
            process = RunningProcess(prepared.invocation, prepared.env, self.config.server.request_timeout_secs)
        except StartError as exc:
            backend.after_run(prepared.env)
            raise Unavailable(str(exc), "backend") from exc
        process.on_close = lambda: backend.after_run(prepared.env)
        return process

    def _execute(self, prepared: PreparedRun, cancel: CancelToken | None) -> RunResult:
        if prepared.dry_run:
            return self._dry_run_result(prepared)
        with self.gate.slot():
            if cancel is not None and cancel.reason:
                return RunResult(prepared.backend.name, exit_code=-1, error=cancel.reason, cancelled=True)
            self._open_session(prepared)
            process = self._spawn(prepared)
            try:
                if cancel is not None:
                    cancel.attach(process)
                outcome = process.collect()
            finally:
                process.close()
        parsed = prepared.backend.parse_output(outcome.stdout, outcome.stderr, outcome.exit_code)
        return self._finish(prepared, parsed, outcome)

    def _dry_run_result(self, prepared: PreparedRun) -> RunResult:
        size = len(prepared.invocation.stdin_text)
        return RunResult(prepared.backend.name,
                         output=f"Would execute: {prepared.command_line()} (prompt on stdin, {size} chars)",
                         model=prepared.spec.model or None)

    def _finish(self, prepared: PreparedRun, parsed: ParsedOutput, outcome: ProcessOutcome) -> RunResult:
        """Turn the parsed output into the unified result; record the turn; clean up ephemeral transcripts."""
        backend = prepared.backend
        error = parsed.error
        exit_code = outcome.exit_code
        if outcome.cancelled:
            error = f"{backend.name} run ended by clinvk: {outcome.cancelled}"
        elif exit_code == 0 and error:
            exit_code = 1  # the CLI said it failed even though it exited 0
        result = RunResult(backend.name, exit_code=exit_code, output=parsed.text, error=error,
                           backend_session_id=parsed.backend_session_id, token_usage=parsed.token_usage,
                           duration_ms=outcome.duration_ms, model=parsed.model or prepared.spec.model or None,
                           timed_out=outcome.timed_out, cancelled=bool(outcome.cancelled) and not outcome.timed_out)
        self._notify(backend.name, result)
        if prepared.spec.ephemeral:
            backend.cleanup_ephemeral(parsed.backend_session_id, prepared.env, prepared.spec.workdir)
        if prepared.session is not None:
            self._record_turn(prepared, result)
        return result

    def _notify(self, backend: str, result: RunResult) -> None:
        outcome = "timeout" if result.timed_out else "cancelled" if result.cancelled else \
            "error" if (result.exit_code or result.error) else "success"
        for observer in self.observers:
            try:
                observer(backend, outcome, result.duration_ms / 1000)
            except Exception:  # an observer must never break a run
                log.exception("run observer failed")

    def _record_turn(self, prepared: PreparedRun, result: RunResult) -> None:
        session = prepared.session
        usage = result.token_usage
        if usage is not None and prepared.backend.cumulative_usage and prepared.spec.resume_id:
            # codex reports the thread's running total; the session already holds the earlier turns.
            before = session.token_usage
            usage = TokenUsage(*(max(0, now - then) for now, then in zip(
                (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens),
                (before.input_tokens, before.output_tokens, before.cached_tokens, before.reasoning_tokens))))
        if not self.config.session.store_token_usage:
            usage = None
        try:
            prepared.session = self.store.record_turn(
                session.id, status="completed" if result.ok else "error",
                backend_session_id=result.backend_session_id, token_usage=usage, error_message=result.error)
        except Exception:  # the answer matters more than the bookkeeping
            log.exception("could not record the turn of session %s", session.id)


class StreamingRun:
    """A started streaming run: iterate :meth:`events`; ``None`` items are keep-alive ticks.

    Closing the iterator early (client gone) kills the CLI's process group.
    """

    def __init__(self, prepared: PreparedRun):
        self.prepared = prepared
        self.result: RunResult | None = None
        self._process: RunningProcess | None = None
        self._gate_taken = False
        service = prepared.service
        if prepared.dry_run:
            return
        service.gate.acquire()
        self._gate_taken = True
        try:
            service._open_session(prepared)
            self._process = service._spawn(prepared)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._gate_taken:
            self._gate_taken = False
            self.prepared.service.gate.release()

    def _tag(self, event: Event) -> Event:
        event.backend = self.prepared.backend.name
        event.session_id = self.prepared.session_id
        return event

    def cancel(self, reason: str) -> None:
        if self._process is not None:
            self._process.terminate(reason)

    def events(self, keepalive: float) -> Iterator[Event | None]:
        prepared = self.prepared
        if prepared.dry_run:
            self.result = prepared.service._dry_run_result(prepared)
            yield self._tag(Event("message", {"text": self.result.output, "role": "assistant"}))
            yield self._tag(Event("done", {"exit_code": 0, "duration_ms": 0}))
            return
        process = self._process
        parser = prepared.backend.stream_parser()
        outcome = None
        try:
            for line in process.lines(keepalive):
                if line is None:
                    yield None
                    continue
                for event in parser.feed(line):
                    yield self._tag(event)
            outcome = process.outcome()
        finally:
            process.close()
            self._release()
            if outcome is None:
                self._abandoned()
                if prepared.spec.ephemeral:  # the transcript a CLI (gemini) began before the client left
                    prepared.backend.cleanup_ephemeral(parser.backend_session_id, prepared.env,
                                                       prepared.spec.workdir)
        parsed = prepared.backend.finish_stream(parser, outcome.stderr, outcome.exit_code)
        result = self.result = prepared.service._finish(prepared, parsed, outcome)
        if result.error and not parser.error:
            yield self._tag(Event("error", {"message": result.error}))
        done: dict[str, Any] = {"exit_code": result.exit_code, "duration_ms": result.duration_ms}
        if result.token_usage:
            done["token_usage"] = result.token_usage.to_dict()
        if result.backend_session_id:
            done["backend_session_id"] = result.backend_session_id
        yield self._tag(Event("done", done))

    def _abandoned(self) -> None:
        """The consumer stopped reading (client gone): the turn ends as an error, not as 'active' forever."""
        process = self._process
        duration_ms = int((time.monotonic() - process.started) * 1000) if process is not None else 0
        self.prepared.service._notify(self.prepared.backend.name, RunResult(
            self.prepared.backend.name, exit_code=-1, duration_ms=duration_ms, cancelled=True))
        session = self.prepared.session
        if session is not None:
            try:
                self.prepared.service.store.record_turn(
                    session.id, status="error", error_message="the stream ended before the run finished")
            except Exception:
                log.exception("could not record the abandoned turn of session %s", session.id)

    def close(self) -> None:
        """Idempotent: end the CLI if the consumer stopped early, and free the run slot."""
        if self._process is not None:
            self._process.close()
        self._release()
