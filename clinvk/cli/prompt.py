"""``clinvk prompt`` (the default command) and ``clinvk resume``: one run, printed as text, JSON or NDJSON."""

from __future__ import annotations

import json
import os
import sys

import click

from ..config import BACKEND_NAMES, Config
from ..lifecycle import PreparedRun
from ..specs import PromptRequest
from .app import cli
from .context import EXIT_USAGE, CliContext, Failure, absolute, exit_with, pass_cli, prompt_text, service_errors
from .params import output_format_options, prompt_options


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def run_and_print(prepared: PreparedRun, fmt: str, config: Config) -> None:
    """Execute (or stream) a prepared run, print it in ``fmt``, exit 0/1."""
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
        body = result.to_dict(prepared.notes or None)
        if session_id:
            body = {"session_id": session_id, **body}
        echo_json(body)
    elif fmt == "text":
        _print_text(result, prepared.notes, session_id, config)
    exit_with(result.ok)


def _print_text(result, notes: list[str], session_id: str | None, config: Config) -> None:
    if result.output:
        click.echo(result.output, nl=not result.output.endswith("\n"))
    for note in notes:
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


@cli.command("prompt", short_help="Run a prompt (the default command).")
@click.argument("prompt", nargs=-1)
@prompt_options
@pass_cli
def prompt_command(obj: CliContext, prompt: tuple[str, ...] = (), **own) -> None:
    """Run PROMPT on a backend (the default command: `clinvk PROMPT` is `clinvk prompt PROMPT`).

    The run is stored as a session unless --ephemeral; continue it with `clinvk resume`. With
    session.auto_resume in the config, the most recent session is continued.
    """
    options = obj.prompt.merged(**own)
    text = prompt_text(prompt)
    service = obj.service()
    config = service.config
    session_id = ""
    if (options.continue_ or config.session.auto_resume) and not options.ephemeral:
        latest = service.store.latest_resumable(backend=options.backend)
        if latest is not None:
            session_id = latest.id
        elif options.continue_:
            raise Failure("no session to continue" + (f" for {options.backend}" if options.backend else ""),
                          EXIT_USAGE)
    request = PromptRequest(prompt=text, backend="" if session_id else options.backend or "",
                            model=options.model or "", session_id=session_id,
                            workdir="" if session_id else absolute(options.workdir) or os.getcwd(),
                            ephemeral=options.ephemeral, dry_run=options.dry_run, stream=options.stream)
    with service_errors():
        prepared = service.prepare(request)
    run_and_print(prepared, options.format, config)


def _resume_options(func):
    for option in reversed([
        click.option("--last", is_flag=True, help="Continue the most recently used session."),
        click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES),
                     help="With --last: only this backend's sessions."),
        click.option("--here", is_flag=True, help="With --last: only sessions that ran in the current directory."),
        click.option("-m", "--model", help="Model for this turn."),
        *output_format_options("text (default), json or stream-json."),
        click.option("--dry-run", is_flag=True, help="Print the command line instead of running it."),
    ]):
        func = option(func)
    return func


@cli.command(short_help="Continue a stored session.")
@click.argument("args", nargs=-1)
@_resume_options
@pass_cli
def resume(obj: CliContext, args: tuple[str, ...], last: bool, backend: str | None, here: bool,
           model: str | None, output_format: str | None, dry_run: bool) -> None:
    """Continue a stored session: `clinvk resume SESSION PROMPT` or `clinvk resume --last PROMPT`.

    SESSION is a session id or a unique prefix of one (see `clinvk sessions list`). Without PROMPT
    (or with `-`) the prompt is read from stdin.
    """
    options = obj.prompt.merged(model=model, output_format=output_format, dry_run=dry_run)
    if not last and not args:
        raise click.UsageError("give a SESSION id (see `clinvk sessions list`) or --last")
    service = obj.service()
    if last:
        session = service.store.latest_resumable(backend=backend,
                                                 working_dir=os.path.realpath(os.getcwd()) if here else None)
        if session is None:
            raise Failure("no session to continue", EXIT_USAGE)
        session_id, rest = session.id, args
    else:
        session_id, rest = args[0], args[1:]
    text = prompt_text(rest)
    request = PromptRequest(prompt=text, session_id=session_id, backend=backend if not last and backend else "",
                            model=options.model or "", dry_run=options.dry_run, stream=options.stream)
    with service_errors():
        prepared = service.prepare(request)
    run_and_print(prepared, options.format, service.config)
