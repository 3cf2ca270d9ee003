"""The `clinvk` command line (click). It uses the same service layer as the HTTP server."""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from . import __version__
from .config import BACKEND_NAMES, Config, ConfigError, load_config

EXIT_OK, EXIT_BACKEND_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
# unified_flags.command_timeout_secs 0 means "no timeout" on the command line; the runner needs a number.
NO_TIMEOUT_SECS = 30 * 86400
FORMATS = ("text", "json", "stream-json")

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  a backend run failed (error, timeout, CLI not available)
  2  usage error (bad option, file, config or session id)
  130  interrupted (Ctrl+C); running CLIs are killed"""


class Failure(click.ClickException):
    """One line on stderr (``Error: ...``) and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_BACKEND_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def _load(config_path: str | None, overrides: dict | None = None, exit_code: int = EXIT_BACKEND_FAILED) -> Config:
    try:
        return load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        raise Failure(f"configuration error: {exc}", exit_code) from None


# -- the group: options shared with the prompt command, an unknown first word is the prompt ----------


def prompt_options(func):
    """Options of a prompt, accepted before the prompt (``clinvk -b codex PROMPT``) and after it."""
    options = [
        click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES),
                     help="Backend to run (default: default_backend in the config, claude)."),
        click.option("-m", "--model", help="Model for the backend."),
        click.option("-w", "--workdir", type=click.Path(file_okay=False),
                     help="Directory the CLI runs in (default: the current directory)."),
        click.option("-o", "--output-format", type=click.Choice(FORMATS),
                     help="text (default): the answer; json: one JSON object; stream-json: NDJSON events."),
        click.option("--json", "as_json", is_flag=True, help="Same as --output-format json."),
        click.option("--dry-run", is_flag=True, help="Print the command line instead of running it."),
        click.option("--ephemeral", is_flag=True, help="Store no session (and leave no CLI transcript)."),
        click.option("-c", "--continue", "continue_", is_flag=True,
                     help="Continue the most recent session (of --backend, if given) instead of starting one."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class PromptGroup(click.Group):
    """A group whose default command is ``prompt``: ``clinvk "explain this"`` runs a prompt."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0]
        if self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.75)
            if close and " " not in name:
                raise click.UsageError(f"no such command {name!r}; did you mean {close[0]!r}? "
                                       f"(to send it as a prompt: clinvk prompt {name})", ctx)
            if name.startswith("-"):  # came after `--` (or is `-`, stdin): text, not an option
                args = ["--", *args]
            return "prompt", self.get_command(ctx, "prompt"), args
        return super().resolve_command(ctx, args)


@click.group(cls=PromptGroup, invoke_without_command=True, subcommand_metavar="PROMPT | COMMAND [ARGS]...",
             context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $CLINVK_CONFIG or ~/.clinvk/config.yaml).")
@prompt_options
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, **options) -> None:
    """Run the claude, codex and gemini CLIs from one command line and one HTTP API.

    `clinvk PROMPT` runs a prompt on a backend and stores it as a session; without PROMPT (or with
    `-`) the prompt is read from stdin. The commands below do the rest.
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["options"] = options
    if ctx.invoked_subcommand is None:
        if _stdin_is_tty() and not config_path and not any(options.values()):
            click.echo(ctx.get_help())
            ctx.exit(EXIT_OK)
        ctx.invoke(prompt_command)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_stdin(what: str = "prompt") -> str:
    if _stdin_is_tty():
        raise click.UsageError(f"no {what} given: pass it as an argument or pipe it on stdin")
    return click.get_text_stream("stdin").read()


def _prompt_text(args: tuple[str, ...] | list[str]) -> str:
    if len(args) > 1:
        raise click.UsageError("give the prompt as one argument (quote it): clinvk \"" + " ".join(args) + "\"")
    text = _read_stdin() if not args or args[0] == "-" else args[0]
    if not text.strip():
        raise click.UsageError("the prompt is empty")
    return text


def _merged(ctx: click.Context, options: dict[str, Any]) -> dict[str, Any]:
    """The prompt options: the command's own, else the ones given before the prompt."""
    outer = (ctx.obj or {}).get("options", {})
    return {key: value if value else outer.get(key) for key, value in options.items()}


def _format(options: dict[str, Any]) -> str:
    if options.get("as_json"):
        return "json"
    return options.get("output_format") or "text"


# -- the service, configured for a local user ---------------------------------------------------------


def cli_config(ctx: click.Context) -> Config:
    """The config for a command-line run: config errors exit 2, runs are timed by
    unified_flags.command_timeout_secs (0: none), and the workdir policy (a server's protection against
    its clients) does not apply to the local user."""
    config = _load((ctx.obj or {}).get("config_path"), exit_code=EXIT_USAGE)
    server = config.server
    server.request_timeout_secs = config.unified_flags.command_timeout_secs or NO_TIMEOUT_SECS
    server.allowed_workdir_prefixes, server.blocked_workdir_prefixes = [], []
    return config


def make_service(ctx: click.Context):
    from .service import Service

    config = cli_config(ctx)
    try:
        return Service(config)
    except Exception as exc:  # e.g. the session store cannot be opened
        raise Failure(f"cannot open the session store {config.sessions_db}: {exc}") from None


@contextmanager
def service_errors(source: str = "") -> Iterator[None]:
    """ServiceError → exit 2 (bad request) or 1 (backend not available); a busy gate → 1."""
    from .gate import GateFull
    from .service import ServiceError, Unavailable

    try:
        yield
    except Unavailable as exc:
        raise Failure(exc.message, EXIT_BACKEND_FAILED) from None
    except ServiceError as exc:
        where = f"{source}: " if source else ""
        if source and exc.field:
            where += f"{exc.field}: "
        raise Failure(where + exc.message, EXIT_USAGE) from None
    except GateFull as exc:
        raise Failure(str(exc), EXIT_BACKEND_FAILED) from None


def _workdir(path: str | None) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


# -- prompt and resume ----------------------------------------------------------------------------


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _run_and_print(prepared, fmt: str, config: Config) -> None:
    """Execute (or stream) a prepared run, print it in ``fmt``, exit 0/1."""
    from .orchestrate import result_dict

    if fmt == "stream-json":
        with service_errors():
            run = prepared.start_stream()
        out = click.get_text_stream("stdout")
        try:
            for event in run.events(60.0):
                if event is not None:
                    out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
                    out.flush()
        finally:
            run.close()
        result = run.result
    else:
        with service_errors():
            result = prepared.execute()
    session_id = prepared.session_id
    if fmt == "json":
        body = result_dict(result, prepared.notes)
        if session_id:
            body = {"session_id": session_id, **body}
        _echo_json(body)
    elif fmt == "text":
        if result.output:
            click.echo(result.output, nl=not result.output.endswith("\n"))
        for note in prepared.notes:
            click.echo(f"Warning [{result.backend}]: {note}", err=True)
        if result.error:
            click.echo(f"Error [{result.backend}]: {result.error}", err=True)
        if config.output.show_tokens and result.token_usage is not None:
            usage = result.token_usage
            click.echo(f"Tokens: {usage.total_tokens} (input: {usage.input_tokens}, "
                       f"output: {usage.output_tokens})", err=True)
        if config.output.show_timing:
            click.echo(f"Time: {result.duration_ms / 1000:.2f}s", err=True)
        if session_id and sys.stderr.isatty():
            click.echo(f"Session {session_id[:8]} (continue: clinvk resume {session_id[:8]} PROMPT)", err=True)
    sys.exit(EXIT_OK if result.ok else EXIT_BACKEND_FAILED)


@cli.command("prompt", short_help="Run a prompt (the default command).")
@click.argument("prompt", nargs=-1)
@prompt_options
@click.pass_context
def prompt_command(ctx: click.Context, prompt: tuple[str, ...] = (), **options) -> None:
    """Run PROMPT on a backend (the default command: `clinvk PROMPT` is `clinvk prompt PROMPT`).

    The run is stored as a session unless --ephemeral; continue it with `clinvk resume`. With
    session.auto_resume in the config, the most recent session is continued.
    """
    from .service import PromptRequest

    options = _merged(ctx, options)
    fmt = _format(options)
    text = _prompt_text(prompt)
    service = make_service(ctx)
    config = service.config
    session_id = ""
    continue_ = options["continue_"]
    if (continue_ or config.session.auto_resume) and not options["ephemeral"]:
        latest = service.store.latest_resumable(backend=options["backend"])
        if latest is not None:
            session_id = latest.id
        elif continue_:
            raise Failure("no session to continue" + (f" for {options['backend']}" if options["backend"] else ""),
                          EXIT_USAGE)
    request = PromptRequest(prompt=text, backend="" if session_id else options["backend"] or "",
                            model=options["model"] or "", session_id=session_id,
                            workdir="" if session_id else _workdir(options["workdir"]) or os.getcwd(),
                            ephemeral=bool(options["ephemeral"]), dry_run=bool(options["dry_run"]),
                            output_format="stream-json" if fmt == "stream-json" else "json")
    with service_errors():
        prepared = service.prepare(request, persist=not options["ephemeral"])
    _run_and_print(prepared, fmt, config)


@cli.command(short_help="Continue a stored session.")
@click.argument("args", nargs=-1)
@click.option("--last", is_flag=True, help="Continue the most recently used session.")
@click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES), help="With --last: only this backend's sessions.")
@click.option("--here", is_flag=True, help="With --last: only sessions that ran in the current directory.")
@click.option("-m", "--model", help="Model for this turn.")
@click.option("-o", "--output-format", type=click.Choice(FORMATS), help="text (default), json or stream-json.")
@click.option("--json", "as_json", is_flag=True, help="Same as --output-format json.")
@click.option("--dry-run", is_flag=True, help="Print the command line instead of running it.")
@click.pass_context
def resume(ctx: click.Context, args: tuple[str, ...], last: bool, backend: str | None, here: bool,
           model: str | None, output_format: str | None, as_json: bool, dry_run: bool) -> None:
    """Continue a stored session: `clinvk resume SESSION PROMPT` or `clinvk resume --last PROMPT`.

    SESSION is a session id or a unique prefix of one (see `clinvk sessions list`). Without PROMPT
    (or with `-`) the prompt is read from stdin.
    """
    from .service import PromptRequest

    options = _merged(ctx, {"model": model, "output_format": output_format, "as_json": as_json,
                            "dry_run": dry_run})
    fmt = _format(options)
    if not last and not args:
        raise click.UsageError("give a SESSION id (see `clinvk sessions list`) or --last")
    service = make_service(ctx)
    if last:
        session = service.store.latest_resumable(backend=backend,
                                                 working_dir=os.path.realpath(os.getcwd()) if here else None)
        if session is None:
            raise Failure("no session to continue", EXIT_USAGE)
        session_id, rest = session.id, args
    else:
        session_id, rest = args[0], args[1:]
    text = _prompt_text(rest)
    request = PromptRequest(prompt=text, session_id=session_id, backend=backend if not last and backend else "",
                            model=options["model"] or "", dry_run=bool(options["dry_run"]),
                            output_format="stream-json" if fmt == "stream-json" else "json")
    with service_errors():
        prepared = service.prepare(request)
    _run_and_print(prepared, fmt, service.config)


# -- sessions ---------------------------------------------------------------------------------------


@cli.group()
def sessions() -> None:
    """List, show, delete and clean up stored sessions."""


def _store(ctx: click.Context):
    from .sessions import SessionStore

    config = cli_config(ctx)
    try:
        return SessionStore(config.sessions_db)
    except Exception as exc:
        raise Failure(f"cannot open the session store {config.sessions_db}: {exc}") from None


def _find(store, session_id: str):
    try:
        return store.get(session_id)
    except (LookupError, ValueError) as exc:
        raise Failure(str(exc), EXIT_USAGE) from None


@sessions.command("list")
@click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES), help="Only this backend's sessions.")
@click.option("--status", type=click.Choice(("active", "completed", "error", "paused")), help="Only this status.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N sessions.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def sessions_list(ctx: click.Context, backend: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List sessions, most recently used first."""
    from .cli_output import ago, one_line, table

    found, total = _store(ctx).list(backend=backend, status=status, limit=limit)
    if as_json:
        _echo_json({"sessions": [s.to_dict() for s in found], "total": total})
        return
    if not found:
        click.echo("No sessions found.")
        return
    rows = [(s.id[:8], s.backend, s.status, ago(s.last_used), s.turn_count,
             s.token_usage.total_tokens or "-", one_line(s.display_name, 40)) for s in found]
    click.echo(table(("ID", "BACKEND", "STATUS", "LAST USED", "TURNS", "TOKENS", "TITLE"), rows))
    if total > len(found):
        click.echo(f"({len(found)} of {total}; --limit N shows more)")


@sessions.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@click.pass_context
def sessions_show(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """Show one session (SESSION_ID: an id or a unique prefix)."""
    from .cli_output import ago

    session = _find(_store(ctx), session_id)
    if as_json:
        _echo_json(session.to_dict())
        return
    data = session.to_dict()
    usage = session.token_usage
    lines = [("ID", session.id), ("Backend", session.backend), ("Model", session.model or ""),
             ("Status", session.status), ("Created", data["created_at"]),
             ("Last used", f"{data['last_used']} ({ago(session.last_used)})"),
             ("Working directory", session.working_dir), ("Backend session", session.backend_session_id or ""),
             ("Title", session.title), ("Initial prompt", session.initial_prompt[:200]),
             ("Turns", session.turn_count),
             ("Tokens", f"{usage.total_tokens} (input {usage.input_tokens}, output {usage.output_tokens}, "
                        f"cached {usage.cached_tokens}, reasoning {usage.reasoning_tokens})"),
             ("Tags", ", ".join(session.tags)),
             ("Metadata", ", ".join(f"{k}={v}" for k, v in session.metadata.items())),
             ("Error", session.error_message or "")]
    for label, value in lines:
        if value != "":
            click.echo(f"{label + ':':<19} {value}")


@sessions.command("delete")
@click.argument("session_id")
@click.pass_context
def sessions_delete(ctx: click.Context, session_id: str) -> None:
    """Delete one session (SESSION_ID: an id or a unique prefix)."""
    store = _store(ctx)
    try:
        session = store.delete(session_id)
    except (LookupError, ValueError) as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    click.echo(f"Deleted session {session.id}.")


def parse_age(value: str) -> float:
    """``30d``, ``30`` (days), ``12h``, ``2w`` → days."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*", value or "")
    if not match:
        raise click.BadParameter(f"{value!r} is not an age such as 30d, 12h or 2w", param_hint="--older-than")
    days = float(match.group(1)) * {"": 1, "d": 1, "h": 1 / 24, "w": 7}[match.group(2)]
    if days <= 0:
        raise click.BadParameter("must be more than 0 (0 would delete every session)", param_hint="--older-than")
    return days


@sessions.command("clean")
@click.option("--older-than", "older_than", metavar="AGE",
              help="Delete sessions not used for AGE: 30d, 12h, 2w (default: session.retention_days).")
@click.pass_context
def sessions_clean(ctx: click.Context, older_than: str | None) -> None:
    """Delete sessions that were not used for a while."""
    config = cli_config(ctx)
    if older_than is None:
        if config.session.retention_days <= 0:
            raise click.UsageError("session.retention_days is 0 (keep forever): give --older-than AGE")
        days = float(config.session.retention_days)
    else:
        days = parse_age(older_than)
    removed = _store(ctx).clean(days)
    click.echo(f"Deleted {removed} session(s) not used for {days:g} days.")


# -- config -------------------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Show the effective configuration or change the config file."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Show the effective configuration (file + environment + defaults; secrets hidden)."""
    import shutil

    import yaml

    config = _load((ctx.obj or {}).get("config_path"), exit_code=EXIT_USAGE)
    data = config.to_dict()
    available = {}
    for name in BACKEND_NAMES:
        backend = config.backend(name)
        available[name] = bool(backend.enabled and shutil.which(backend.command or name,
                                                                 path=(backend.env.get("PATH") or None)))
    if as_json:
        _echo_json({"home": str(config.home), "config_file": str(config.config_path or ""),
                    "config": data, "available_backends": available})
        return
    click.echo(f"# clinvk home: {config.home}")
    click.echo(f"# config file: {config.config_path or '(none: built-in defaults and environment)'}")
    click.echo("# available backends: " + ", ".join(f"{n} ({'available' if ok else 'not found'})"
                                                   for n, ok in available.items()))
    click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True), nl=False)


@config_group.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY (dotted, e.g. server.port) to VALUE in the config file, after checking both."""
    from .config import default_config_path, set_config_value

    path = (ctx.obj or {}).get("config_path")
    try:
        set_config_value(path, key, value)
    except ConfigError as exc:
        raise Failure(f"configuration error: {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise Failure(f"cannot write the config file: {exc}", EXIT_BACKEND_FAILED) from None
    click.echo(f"Set {key} = {value} in {Path(path).expanduser() if path else default_config_path()}")


# -- parallel, chain, compare ---------------------------------------------------------------------------


def read_spec(path: str | None, key: str) -> tuple[dict[str, Any], str]:
    """The JSON or YAML document of --file (or stdin): a mapping, or a bare list of ``key``."""
    import yaml

    if path in (None, "-"):
        source = "stdin"
        text = _read_stdin(f"{key} (use --file FILE or pipe JSON/YAML on stdin)")
    else:
        source = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(f"{path}: cannot be read: {getattr(exc, 'strerror', None) or exc}", EXIT_USAGE) from None
    try:
        if source.endswith(".json"):
            data = json.loads(text)
        else:  # YAML, which also reads JSON
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise Failure(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", EXIT_USAGE) \
            from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise Failure(f"{source}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}", EXIT_USAGE) \
            from None
    if isinstance(data, list):
        data = {key: data}
    if not isinstance(data, dict):
        raise Failure(f"{source}: must be a mapping with {key!r} or a list of {key}", EXIT_USAGE)
    return data, source


def _validate(schema, data: dict[str, Any], source: str) -> dict[str, Any]:
    from marshmallow import ValidationError

    from .server.errors import flatten_validation

    try:
        return schema.load(data)
    except ValidationError as exc:
        errors = flatten_validation(exc.messages, "@")
        detail = "; ".join(f"{e['field'].removeprefix('@.')}: {e['message']}" for e in errors[:5])
        raise Failure(f"{source}: {detail}", EXIT_USAGE) from None


def _fill(items: Any, backend: str) -> None:
    """Defaults for task/step entries: the backend (-b, else default_backend), and workdirs relative to
    the current directory."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, dict):
            if "backend" not in item and backend:
                item["backend"] = backend
            if isinstance(item.get("workdir"), str) and item["workdir"]:
                item["workdir"] = _workdir(item["workdir"])


def _label(backend: str, name: str, prompt: str) -> str:
    from .cli_output import one_line

    return f"{backend:<6} {one_line(name or prompt, 50)}"


def _print_sections(outcomes, title) -> None:
    from .cli_output import seconds, status_word

    for outcome in outcomes:
        click.echo(f"=== {title(outcome)} | {status_word(outcome)} | {seconds(outcome.result.duration_ms)} ===")
        if outcome.result.output:
            click.echo(outcome.result.output, nl=not outcome.result.output.endswith("\n"))
        if outcome.result.error:
            click.echo(f"Error: {outcome.result.error}")
        click.echo()


def _progress(labels: list[str], title: str, enabled: bool):
    from contextlib import nullcontext

    from .cli_output import Progress

    if not enabled:
        return nullcontext(None)
    stream = click.get_text_stream("stderr")
    return Progress(labels, stream, tty=stream.isatty(), title=title)


def _stream_batch(run) -> bool:
    """Print a ParallelStream's events as NDJSON; True when every task completed."""
    out = click.get_text_stream("stdout")
    try:
        for item in run.events(3600.0):
            if item is not None:
                out.write(json.dumps(item, ensure_ascii=False) + "\n")
                out.flush()
    finally:
        run.close()
    return run.outcome().ok


def _batch_options(func):
    options = [
        click.option("-o", "--output-format", type=click.Choice(FORMATS),
                     help="text (default): progress, answers and a summary; json: one JSON object as the "
                          "HTTP API answers; stream-json: NDJSON events tagged with `task`."),
        click.option("--json", "as_json", is_flag=True, help="Same as --output-format json."),
        click.option("--dry-run", is_flag=True, help="Print the command lines instead of running them."),
        click.option("-q", "--quiet", is_flag=True, help="No progress display."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command(short_help="Run several tasks at once (from a JSON/YAML file).")
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Tasks as JSON or YAML (default: stdin).")
@click.option("--max-parallel", type=click.IntRange(min=0),
              help="Tasks at once (default: the file's max_parallel, else parallel.max_workers).")
@click.option("--fail-fast/--no-fail-fast", default=None,
              help="Stop everything at the first failed task (default: the file, else parallel.fail_fast).")
@_batch_options
@click.pass_context
def parallel(ctx: click.Context, path: str | None, max_parallel: int | None, fail_fast: bool | None,
             output_format: str | None, as_json: bool, dry_run: bool, quiet: bool) -> None:
    """Run several tasks at once; the file is `{"tasks": [{"backend", "prompt", ...}], "max_parallel",
    "fail_fast"}` (or just the list of tasks), each task with the fields of a prompt.

    Tasks are ephemeral. Exits 1 if any task failed.
    """
    from . import orchestrate
    from .server.orchestration_schemas import ParallelRequestSchema

    options = _merged(ctx, {"output_format": output_format, "as_json": as_json, "dry_run": dry_run})
    fmt = _format(options)
    data, source = read_spec(path, "tasks")
    service = make_service(ctx)
    _fill(data.get("tasks"), (ctx.obj or {}).get("options", {}).get("backend") or service.config.default_backend)
    spec = _validate(ParallelRequestSchema(), data, source)
    names = [task.get("name", "") for task in spec["tasks"]]
    with service_errors(source):
        tasks = orchestrate.prepare_tasks(service, [orchestrate.request_from(t) for t in spec["tasks"]],
                                          dry_run=bool(options["dry_run"] or spec.get("dry_run")),
                                          stream=fmt == "stream-json")
        workers = orchestrate.max_workers(service, max_parallel or spec.get("max_parallel"), len(tasks))
    fail_fast = fail_fast if fail_fast is not None else spec.get("fail_fast", service.config.parallel.fail_fast)
    if fmt == "stream-json":
        ok = _stream_batch(orchestrate.ParallelStream(tasks, workers, fail_fast=fail_fast, names=names))
        sys.exit(EXIT_OK if ok else EXIT_BACKEND_FAILED)
    labels = [_label(t.backend.name, n, t.request.prompt) for t, n in zip(tasks, names)]
    title = f"Running {len(tasks)} tasks ({workers} at a time{', fail-fast' if fail_fast else ''})"
    with _progress(labels, title, fmt == "text" and not quiet) as progress:
        outcome = orchestrate.ParallelRun(tasks, workers, fail_fast=fail_fast, names=names,
                                          listener=progress).run()
    if fmt == "json":
        _echo_json(outcome.to_dict())
    else:
        from .cli_output import one_line, seconds, status_word, table

        _print_sections(outcome.results,
                        lambda o: f"[{o.index + 1}/{len(tasks)}] {o.backend} {one_line(o.name, 40)}".rstrip())
        rows = [(o.index + 1, o.backend, status_word(o), seconds(o.result.duration_ms),
                 one_line(o.name or o.prompt, 40)) for o in outcome.results]
        click.echo(table(("#", "BACKEND", "STATUS", "DURATION", "TASK"), rows))
        counts = outcome.summary()
        click.echo(f"Total: {counts['total_tasks']} tasks, {counts['completed']} completed, {counts['failed']} "
                   f"failed, {counts['cancelled']} cancelled ({seconds(outcome.total_duration_ms)})")
    sys.exit(EXIT_OK if outcome.ok else EXIT_BACKEND_FAILED)


@cli.command(short_help="Run steps in order, each fed the previous output.")
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Steps as JSON or YAML (default: stdin).")
@click.option("--stop-on-failure/--no-stop-on-failure", default=None,
              help="Stop at the first failed step (default: the file's stop_on_failure, else yes).")
@click.option("--pass-working-dir", is_flag=True, default=None,
              help="A step without workdir runs in the previous step's workdir.")
@_batch_options
@click.pass_context
def chain(ctx: click.Context, path: str | None, stop_on_failure: bool | None, pass_working_dir: bool | None,
          output_format: str | None, as_json: bool, dry_run: bool, quiet: bool) -> None:
    """Run steps one after the other; `{{previous}}` in a step's prompt is the previous step's output.

    The file is `{"steps": [{"name", "backend", "prompt", ...}], "stop_on_failure", "pass_working_dir"}`
    (or just the list of steps). Steps are ephemeral. Exits 1 if a step failed.
    """
    from . import orchestrate
    from .server.orchestration_schemas import ChainRequestSchema

    options = _merged(ctx, {"output_format": output_format, "as_json": as_json, "dry_run": dry_run})
    fmt = "json" if _format(options) == "json" else "text"
    data, source = read_spec(path, "steps")
    service = make_service(ctx)
    _fill(data.get("steps"), (ctx.obj or {}).get("options", {}).get("backend") or service.config.default_backend)
    spec = _validate(ChainRequestSchema(), data, source)
    steps = [orchestrate.ChainStep(orchestrate.request_from(s), s.get("name", "")) for s in spec["steps"]]
    dry = bool(options["dry_run"] or spec.get("dry_run"))
    stop = stop_on_failure if stop_on_failure is not None else spec.get("stop_on_failure", True)
    pass_dir = bool(pass_working_dir or spec.get("pass_working_dir"))
    with service_errors(source):
        orchestrate.check_chain(service, steps, dry_run=dry)
    labels = [_label(s.request.backend, s.name, s.request.prompt) for s in steps]
    with _progress(labels, f"Running a chain of {len(steps)} steps", fmt == "text" and not quiet) as progress:
        outcome = orchestrate.run_chain(service, steps, stop_on_failure=stop, pass_working_dir=pass_dir,
                                        dry_run=dry, listener=progress)
    if fmt == "json":
        _echo_json(outcome.to_dict())
    else:
        from .cli_output import seconds, status_word, table

        _print_sections(outcome.results,
                        lambda o: f"[{o.index + 1}/{len(steps)}] {o.name or f'step {o.index + 1}'} ({o.backend})")
        rows = [(o.index + 1, o.backend, status_word(o), seconds(o.result.duration_ms), o.name)
                for o in outcome.results]
        click.echo(table(("STEP", "BACKEND", "STATUS", "DURATION", "NAME"), rows))
        click.echo(f"Total: {outcome.completed_steps}/{outcome.total_steps} steps completed "
                   f"({seconds(outcome.total_duration_ms)})")
    if not outcome.ok:
        click.echo(f"Error: chain failed at step {outcome.failed_step}", err=True)
        sys.exit(EXIT_BACKEND_FAILED)


@cli.command(short_help="Ask several backends the same prompt.")
@click.argument("prompt", nargs=-1)
@click.option("--backends", help="Comma-separated backends to ask, e.g. claude,codex.")
@click.option("--all-backends", is_flag=True, help="Ask every available backend.")
@click.option("--sequential", is_flag=True, help="One backend after the other instead of all at once.")
@click.option("-m", "--model", help="Model for every backend.")
@click.option("-w", "--workdir", type=click.Path(file_okay=False), help="Directory the CLIs run in.")
@_batch_options
@click.pass_context
def compare(ctx: click.Context, prompt: tuple[str, ...], backends: str | None, all_backends: bool,
            sequential: bool, model: str | None, workdir: str | None, output_format: str | None,
            as_json: bool, dry_run: bool, quiet: bool) -> None:
    """Ask several backends the same PROMPT (or stdin) and show their answers side by side.

    Exits 1 if any backend failed or was not available.
    """
    from . import orchestrate

    options = _merged(ctx, {"model": model, "workdir": workdir, "output_format": output_format,
                            "as_json": as_json, "dry_run": dry_run})
    fmt = _format(options)
    if bool(backends) == all_backends:
        raise click.UsageError("give either --backends a,b or --all-backends")
    if backends:
        names = [b.strip() for b in backends.split(",") if b.strip()]
        unknown = [b for b in names if b not in BACKEND_NAMES]
        if unknown or not names:
            raise click.BadParameter(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKEND_NAMES)})"
                                     if unknown else "no backend given", param_hint="--backends")
    text = _prompt_text(prompt)
    service = make_service(ctx)
    if all_backends:
        names = [b for b in BACKEND_NAMES if options["dry_run"] or service.executable(b)]
        for skipped in (b for b in BACKEND_NAMES if b not in names):
            click.echo(f"Warning: skipping {skipped}: not available", err=True)
        if not names:
            raise Failure("no backend is available")
    with service_errors():
        tasks = orchestrate.compare_tasks(service, text, names, model=options["model"] or "",
                                          workdir=_workdir(options["workdir"]), dry_run=bool(options["dry_run"]),
                                          stream=fmt == "stream-json")
    workers = orchestrate.compare_workers(service, len(tasks), sequential)
    if fmt == "stream-json":
        ok = _stream_batch(orchestrate.ParallelStream(tasks, workers))
        sys.exit(EXIT_OK if ok else EXIT_BACKEND_FAILED)
    from .cli_output import one_line, seconds, status_word, table

    title = f"Comparing {len(names)} backends: {', '.join(names)} | prompt: {one_line(text, 60)}"
    with _progress(names, title, fmt == "text" and not quiet) as progress:
        outcome = orchestrate.ParallelRun(tasks, workers, listener=progress).run()
    if fmt == "json":
        _echo_json(outcome.compare_dict(text, names))
    else:
        _print_sections(outcome.results, lambda o: f"[{o.backend}]")
        rows = [(o.backend, status_word(o), seconds(o.result.duration_ms), o.result.model or "(default)")
                for o in outcome.results]
        click.echo(table(("BACKEND", "STATUS", "DURATION", "MODEL"), rows))
        click.echo(f"Total time: {seconds(outcome.total_duration_ms)}")
    sys.exit(EXIT_OK if outcome.ok else EXIT_BACKEND_FAILED)


# -- version, serve ---------------------------------------------------------------------------------------


@cli.command()
def version() -> None:
    """Print the clinvk version."""
    click.echo(f"clinvk {__version__}")


@cli.command()
@click.option("--host", help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("-p", "--port", type=click.IntRange(1, 65535), help="Port (default: server.port, 8080).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes (default: server.workers).")
@click.option("--threads", type=click.IntRange(1, 1024), help="Threads per worker (default: server.threads).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file for this server.")
@click.pass_context
def serve(ctx: click.Context, host, port, workers, threads, config_path) -> None:
    """Start the HTTP API server (gunicorn, gthread workers).

    Exits 0 on Ctrl+C or SIGTERM, 1 when the server cannot start (port in use, bad config).
    """
    from .serve import PortUnavailable, run

    server = {k: v for k, v in {"host": host, "port": port, "workers": workers, "threads": threads}.items() if v}
    config = _load(config_path or ctx.obj.get("config_path"), {"server": server} if server else None)
    try:
        sys.exit(run(config))
    except PortUnavailable as exc:
        click.echo(f"Error: {exc.strerror}", err=True)
        sys.exit(EXIT_BACKEND_FAILED)


def main() -> None:
    """The console script: like click's standalone mode, but Ctrl+C exits 130 after the CLIs are killed."""
    try:
        code = cli.main(prog_name="clinvk", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        from .runner import terminate_all

        terminate_all("interrupted")
        click.echo("\nInterrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # `clinvk ... | head`
        sys.stderr.close()
        sys.exit(EXIT_OK)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
