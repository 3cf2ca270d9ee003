"""The life of one CLI run: gate slot → session → spawn → parse → record the turn.

:class:`PreparedRun` is a validated run (what :meth:`clinvk.service.Service.prepare` returns); its
:meth:`~PreparedRun.execute` and :meth:`~PreparedRun.start_stream` go through one :class:`RunLifecycle`,
whatever asked for the run (native prompt, OpenAI/Anthropic compat, orchestration, command line).

Each stage is one method, so later policy plugs in at one place: :meth:`RunLifecycle.admit` (the
session's turn lease, then the concurrency gate), :meth:`RunLifecycle.launch` (argv, env and
cwd of the process; a per-session CLI home, a sandbox wrapper and an environment allowlist belong
here), :meth:`RunLifecycle.spawn` (process start; the runner's registry of live process groups is
where a supervisor or a shutdown drain finds it) and :meth:`RunLifecycle.finish` (parse and record).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shlex
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .backends import BACKENDS, Backend, Invocation, RunSpec
from .backends.base import ParsedOutput
from . import runner
from .errors import ShuttingDown, Unavailable
from .events import DONE, ERROR, MESSAGE, Event, RunResult, TokenUsage
from .homes import CliHome
from . import sandbox
from .runner import ProcessOutcome, RunningProcess, StartError
from .scratch import is_scratch, new_scratch_dir, release_scratch_dir, take_scratch_dir
from .sessions import Session, archive
from .sessions.turns import HeldTurn
from .specs import PromptRequest
from .warm.use import take_warm

if TYPE_CHECKING:  # the service imports this module
    from .service import Service

log = logging.getLogger(__name__)

SHUTTING_DOWN = "shutting_down"  # the error code of a run the server's shutdown ended


class CancelToken:
    """Lets another thread (fail-fast, shutdown, a client gone) end a run that is in progress."""

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


@dataclass
class PreparedRun:
    """A validated run, ready to execute once or to stream once."""

    service: "Service"
    backend: Backend
    spec: RunSpec
    request: PromptRequest
    invocation: Invocation
    dry_run: bool
    session: Session | None = None
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # the CLI's environment, set by RunLifecycle.launch
    shown_command: str = ""  # a dry run's command line, operator-configured values redacted (Service.prepare)

    @property
    def stream(self) -> bool:
        return self.spec.stream

    @property
    def ephemeral(self) -> bool:
        return self.spec.ephemeral

    @property
    def session_id(self) -> str | None:
        return self.session.id if self.session else None

    def command_line(self) -> str:
        """What a dry run shows: the command line without the operator's configuration."""
        return self.shown_command or shlex.join([self.backend.name] + self.invocation.argv[1:])

    def execute(self, cancel: CancelToken | None = None) -> RunResult:
        """Run to completion (non-streaming) and record the turn."""
        return RunLifecycle(self).execute(cancel)

    def start_stream(self) -> "StreamingRun":
        """Take a run slot and spawn the CLI now, so a refusal can still be an HTTP error."""
        return StreamingRun(RunLifecycle(self))

    def dry_run_result(self) -> RunResult:
        size = len(self.invocation.stdin_text)
        return RunResult(self.backend.name,
                         output=f"Would execute: {self.command_line()} (prompt on stdin, {size} chars)",
                         model=self.spec.model or None)


def isolate(service: "Service", backend: str, session: Session | None,
            invocation: Invocation) -> "tuple[Invocation, CliHome | None, str | None]":
    """``invocation`` in its CLI home (:mod:`clinvk.homes`: the session's, or a throwaway one when
    ``session`` is None), then in the sandbox (:mod:`clinvk.sandbox`) when runs are sandboxed. The third
    value is the scratch directory made for an ephemeral run that names no workdir."""
    sandboxed = service.sandbox.active
    scratch = None
    if session is None and not invocation.cwd:
        # An ephemeral run without a workdir: an empty scratch directory of its own, never the
        # server's (here, not earlier, so that each warm process gets one of its own).
        scratch = take_scratch_dir(service.config.home)
        invocation = dataclasses.replace(invocation, cwd=scratch)
    if session is not None and service.store.shares_local_state:
        # The previous turn may have run on another host: its home (and scratch workdir) first.
        archive.restore_if_stale(service.store, session.id, local_state(service, session))
    home = service.homes.open(backend, session.id if session else None, invocation.env,
                              sandboxed=sandboxed, legacy=bool(session and session.turn_count))
    if home is not None:
        invocation = dataclasses.replace(invocation, env={**invocation.env, **home.env()})
    if sandboxed:
        if not invocation.cwd and home is not None:
            # Never the server's own directory (it may hold the state dir): an empty one of the home.
            invocation = dataclasses.replace(invocation, cwd=str(home.workdir()))
        invocation = sandbox.wrap(invocation, home=str(home.path) if home else None,
                                  extra_rw=home.binds if home else [])
    return invocation, home, scratch


def local_state(service: "Service", session: Session) -> dict[str, Path]:
    """The session's directories on this host that a store shared by several hosts carries from turn
    to turn: its CLI home, and its workdir when that is a clinvk scratch dir (a workdir the client
    named is the client's: the same path on every host, on shared storage)."""
    parts = {"home": service.homes.path(session.id)}
    if is_scratch(service.config.home, session.working_dir):
        parts["workdir"] = Path(session.working_dir)
    return parts


def isolate_warm(service: "Service", backend: str, invocation: Invocation):
    """A warm process's isolation: a throwaway home and scratch directory of its own (pooled runs are
    ephemeral), and what releases them when the process ends."""
    launched, home, scratch = isolate(service, backend, None, invocation)
    return launched, functools.partial(release_isolation, service, backend, home, scratch, launched.env)


def release_isolation(service: "Service", backend: str, home: "CliHome | None", scratch: str | None,
                      env: dict[str, str]) -> None:
    release_home(home, service.homes.locks)
    if scratch and is_scratch(service.config.home, scratch):
        BACKENDS[backend].forget_workdir(env, scratch)
        release_scratch_dir(service.config.home, scratch)


def release_home(home: "CliHome | None", locks) -> None:
    """After the process: refreshed login files go back to the operator, a throwaway home goes."""
    if home is not None:
        try:
            home.release(locks)
        except Exception:
            log.exception("could not release the CLI home %s", home.path)


class RunLifecycle:
    """One run of a :class:`PreparedRun`, stage by stage. Used once."""

    def __init__(self, prepared: PreparedRun):
        self.prepared = prepared
        self.service = prepared.service
        self._admitted: ExitStack | None = None  # what admit() holds, while it holds it
        self.turn: HeldTurn | None = None  # the session's turn lease, until release_turn()
        self._turn = ExitStack()  # holds it past admit(): the turn is recorded and archived first
        self.home: CliHome | None = None
        self.launched: Invocation | None = None

    # -- stages ------------------------------------------------------------------------------------

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold what a run needs before its CLI may start: the session's turn (a continued session;
        :class:`~clinvk.errors.SessionBusy` while another turn runs), then a slot of the tenant's own
        gate (if it has one), then one of the server's concurrency gate. A new session's turn is added
        by :meth:`open_session`."""
        with ExitStack() as held:
            session = self.prepared.session
            if session is not None and not self.prepared.dry_run:
                self.turn = self._turn.enter_context(self.service.turns.hold(session.id))
            # acquire/release rather than slot(): one generator-based context manager less per gate
            tenant_gate = self.service.tenant_gate()
            if tenant_gate is not None:
                tenant_gate.acquire()
                held.callback(tenant_gate.release)
            gate = self.service.gate
            gate.acquire()
            held.callback(gate.release)
            self._admitted = held
            try:
                yield
            except BaseException:
                self.release_turn()
                raise
            finally:
                self._admitted = None

    def release_turn(self) -> None:
        """Give the session's turn back, once the turn is recorded (and archived). Idempotent."""
        self._turn.close()

    def assign_workdir(self) -> None:
        """A run that names no workdir gets a fresh scratch directory under the state directory, never
        the server's own; a session keeps it for its later turns (it is recorded as its workdir)."""
        spec = self.prepared.spec
        # An ephemeral run's comes with its isolation (isolate()), one per process.
        if not spec.workdir and self.prepared.session is None and not self.prepared.ephemeral:
            spec.workdir = new_scratch_dir(self.service.config.home)

    def release_workdir(self) -> None:
        """An ephemeral run's scratch directory goes when the run does."""
        prepared = self.prepared
        if prepared.ephemeral and is_scratch(self.service.config.home, prepared.spec.workdir):
            prepared.backend.forget_workdir(prepared.env, prepared.spec.workdir)
            release_scratch_dir(self.service.config.home, prepared.spec.workdir)

    def open_session(self) -> None:
        """Create the session a first, persistent turn is recorded in."""
        prepared = self.prepared
        if prepared.session is None and not prepared.ephemeral and not prepared.dry_run:
            request = prepared.request
            prepared.session = self.service.store.create(
                backend=prepared.backend.name, working_dir=prepared.spec.workdir, model=request.model or None,
                initial_prompt=request.prompt,
                tags=list(self.service.config.session.default_tags) + list(request.tags),
                metadata=dict(request.metadata), owner=self.service.tenant.name)
            if self._admitted is not None:  # its id is in the first stream event: a second turn may come
                self.turn = self._turn.enter_context(self.service.turns.hold(prepared.session.id))

    def launch(self) -> Invocation:
        """The process to start before its isolation: argv, environment, working directory and stdin,
        all decided here (:meth:`isolate` adds the CLI home and the sandbox)."""
        prepared = self.prepared
        # An allowlist of the server's variables (clinvk.cli_env), never all of them: CLINVK_API_KEYS
        # and other secrets must not reach an agent that can print its environment.
        prepared.env = self.service.environment(prepared.backend.name)
        return dataclasses.replace(prepared.invocation, env=prepared.env, cwd=prepared.spec.workdir or None)

    def isolate(self, invocation: Invocation) -> Invocation:
        """``invocation`` in the CLI's own home (the session's, or a throwaway one) and sandbox."""
        prepared = self.prepared
        session = None if prepared.ephemeral else prepared.session
        invocation, self.home, scratch = isolate(self.service, prepared.backend.name, session, invocation)
        if scratch:
            prepared.spec.workdir = scratch  # release_workdir removes it with the run
        return invocation

    def release_home(self) -> None:
        """After the process: refreshed login files go back to the operator, a throwaway home goes."""
        release_home(self.home, self.service.homes.locks)

    def spawn(self) -> RunningProcess:
        """Start the CLI (or take one the warm pool started ahead for this very launch); the backend's
        after_run hook runs when the process is closed."""
        backend, bare = self.prepared.backend, self.launch()
        warm = take_warm(self.prepared, bare, functools.partial(isolate_warm, self.service, backend.name))
        release_warm = warm.on_close if warm is not None else None  # the warm process's own home
        launch = warm.launched if warm is not None else self.isolate(bare)
        self.launched = launch
        backend.before_run(launch.env)
        try:
            process = warm or RunningProcess(launch, launch.env, self.service.config.server.request_timeout_secs)
        except StartError as exc:
            backend.after_run(launch.env)
            self.release_home()
            self.release_workdir()
            raise Unavailable(str(exc), "backend") from exc

        def closed() -> None:
            backend.after_run(launch.env)
            self.release_home()
            if release_warm is not None:
                release_warm()

        process.on_close = closed
        if self.turn is not None:  # another host may take the session over: stop writing to it
            turn = self.turn
            self.turn.when_lost(lambda: process.terminate(turn.reason))
        return process

    def finish(self, parsed: ParsedOutput, outcome: ProcessOutcome) -> RunResult:
        """Turn the parsed output into the unified result; record the turn; clean up ephemeral transcripts."""
        prepared = self.prepared
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
        self.service.notify(backend.name, result)
        if prepared.ephemeral:
            backend.cleanup_ephemeral(parsed.backend_session_id, self._run_env(), prepared.spec.workdir)
            self.release_workdir()
        if prepared.session is not None:
            self._record_turn(result)
        return result

    def abandon(self, process: RunningProcess | None, backend_session_id: str | None) -> None:
        """The consumer stopped reading (client gone): the turn ends as an error, not as 'active' forever."""
        prepared = self.prepared
        duration_ms = int((time.monotonic() - process.started) * 1000) if process is not None else 0
        self.service.notify(prepared.backend.name, RunResult(prepared.backend.name, exit_code=-1,
                                                             duration_ms=duration_ms, cancelled=True))
        if prepared.ephemeral:  # the transcript a CLI (gemini) began before the client left
            prepared.backend.cleanup_ephemeral(backend_session_id, self._run_env(), prepared.spec.workdir)
            self.release_workdir()
        session = prepared.session
        if session is not None:
            try:
                self.service.store.record_turn(
                    session.id, status="error", error_message="the stream ended before the run finished")
            except Exception:
                log.exception("could not record the abandoned turn of session %s", session.id)

    def _run_env(self) -> dict[str, str]:
        return self.launched.env if self.launched is not None else self.prepared.env

    # -- the non-streaming run ---------------------------------------------------------------------

    def execute(self, cancel: CancelToken | None) -> RunResult:
        prepared = self.prepared
        if prepared.dry_run:
            return prepared.dry_run_result()
        try:
            with self.admit():
                if cancel is not None and cancel.reason:
                    return RunResult(prepared.backend.name, exit_code=-1, error=cancel.reason, cancelled=True)
                self.assign_workdir()
                self.open_session()
                process = self.spawn()
                try:
                    if cancel is not None:
                        cancel.attach(process)
                    outcome = process.collect()
                finally:
                    process.close()
            parsed = prepared.backend.parse_output(outcome.stdout, outcome.stderr, outcome.exit_code)
            result = self.finish(parsed, outcome)
        finally:  # recorded (and its archive stored) before the turn lease is given back
            self.release_turn()
        if result.cancelled and runner.stopping():
            raise ShuttingDown(result.error or "the server is shutting down")
        return result

    def _record_turn(self, result: RunResult) -> None:
        prepared = self.prepared
        session = prepared.session
        usage = result.token_usage
        if usage is not None and prepared.backend.cumulative_usage and prepared.spec.resume_id:
            # codex reports the thread's running total; the session already holds the earlier turns.
            before = session.token_usage
            usage = TokenUsage(*(max(0, now - then) for now, then in zip(
                (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens),
                (before.input_tokens, before.output_tokens, before.cached_tokens, before.reasoning_tokens))))
        if not self.service.config.session.store_token_usage:
            usage = None
        try:
            prepared.session = self.service.store.record_turn(
                session.id, status="completed" if result.ok else "error",
                backend_session_id=result.backend_session_id, token_usage=usage, error_message=result.error)
        except Exception:  # the answer matters more than the bookkeeping
            log.exception("could not record the turn of session %s", session.id)
            return
        self.save_local_state()

    def save_local_state(self) -> None:
        """A store shared by several hosts keeps the session's directories as of this turn, so the
        next turn may run on any host. Called while the turn lease is still held: the next turn
        cannot start before the archive is stored."""
        session = self.prepared.session
        if not self.service.store.shares_local_state:
            return
        try:
            archive.save(self.service.store, session.id, session.turn_count, local_state(self.service, session),
                         self.prepared.backend.name)
        except Exception:  # the next turn on another host starts from the previous archive
            log.exception("could not store the archive of session %s", session.id)


class StreamingRun:
    """A started streaming run: iterate :meth:`events`; ``None`` items are keep-alive ticks.

    Closing the iterator early (client gone) kills the CLI's process group.
    """

    def __init__(self, lifecycle: RunLifecycle):
        self.lifecycle = lifecycle
        self.prepared = lifecycle.prepared
        self.result: RunResult | None = None
        self._process: RunningProcess | None = None
        self._admission = ExitStack()  # closed once, by the first of events() ending or close()
        if self.prepared.dry_run:
            return
        self._admission.enter_context(lifecycle.admit())
        try:
            lifecycle.assign_workdir()
            lifecycle.open_session()
            self._process = lifecycle.spawn()
        except BaseException:
            self._release()
            lifecycle.release_turn()
            raise

    def _release(self) -> None:
        self._admission.close()

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
            self.result = prepared.dry_run_result()
            yield self._tag(Event(MESSAGE, {"text": self.result.output, "role": "assistant"}))
            yield self._tag(Event(DONE, {"exit_code": 0, "duration_ms": 0}))
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
                self.lifecycle.abandon(process, parser.backend_session_id)
                self.lifecycle.release_turn()
        try:
            parsed = prepared.backend.finish_stream(parser, outcome.stderr, outcome.exit_code)
            result = self.result = self.lifecycle.finish(parsed, outcome)
        finally:  # recorded (and its archive stored) before the turn lease is given back
            self.lifecycle.release_turn()
        if result.error and not parser.error:
            error = {"message": result.error}
            if result.cancelled and runner.stopping():
                error["code"] = SHUTTING_DOWN
            yield self._tag(Event(ERROR, error))
        done: dict[str, Any] = {"exit_code": result.exit_code, "duration_ms": result.duration_ms}
        if result.token_usage:
            done["token_usage"] = result.token_usage.to_dict()
        if result.backend_session_id:
            done["backend_session_id"] = result.backend_session_id
        yield self._tag(Event(DONE, done))

    def close(self) -> None:
        """Idempotent: end the CLI if the consumer stopped early, and free the run slot."""
        if self._process is not None:
            self._process.close()
        self._release()
        self.lifecycle.release_turn()
