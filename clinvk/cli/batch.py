"""``clinvk parallel``, ``chain`` and ``compare``: the same specs and entry points as the HTTP API
(:mod:`clinvk.specs`, :mod:`clinvk.orchestration`), read from a JSON/YAML file or the command line."""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import yaml
from marshmallow import Schema, ValidationError

from .. import orchestration
from ..config import BACKEND_NAMES
from ..orchestration import ParallelStream, TaskOutcome
from ..specs import ChainRequestSchema, CompareSpec, ParallelRequestSchema, flatten_validation
from .app import cli
from .context import EXIT_USAGE, CliContext, Failure, absolute, exit_with, pass_cli, prompt_text, read_stdin, \
    service_errors
from .output import Progress, one_line, seconds, status_word, table
from .params import BACKEND_LIST, batch_options
from .prompt import echo_json


def read_spec(path: str | None, key: str) -> tuple[dict[str, Any], str]:
    """The JSON or YAML document of --file (or stdin): a mapping, or a bare list of ``key``."""
    if path in (None, "-"):
        source = "stdin"
        text = read_stdin(f"{key} (use --file FILE or pipe JSON/YAML on stdin)")
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


def load_spec(schema: Schema, data: dict[str, Any], source: str, key: str, backend: str):
    """Validate the document with the HTTP API's schema. Entries without a backend get ``backend``
    (-b, else default_backend) and workdirs are relative to the current directory."""
    items = data.get(key)
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            if "backend" not in item and backend:
                item["backend"] = backend
            if isinstance(item.get("workdir"), str) and item["workdir"]:
                item["workdir"] = absolute(item["workdir"])
    try:
        return schema.load(data)
    except ValidationError as exc:
        errors = flatten_validation(exc.messages, "@")
        detail = "; ".join(f"{e['field'].removeprefix('@.')}: {e['message']}" for e in errors[:5])
        raise Failure(f"{source}: {detail}", EXIT_USAGE) from None


def _label(backend: str, name: str, prompt: str) -> str:
    return f"{backend:<6} {one_line(name or prompt, 50)}"


def _print_sections(outcomes: Sequence[TaskOutcome], title: Callable[[TaskOutcome], str]) -> None:
    for outcome in outcomes:
        click.echo(f"=== {title(outcome)} | {status_word(outcome)} | {seconds(outcome.result.duration_ms)} ===")
        if outcome.result.output:
            click.echo(outcome.result.output, nl=not outcome.result.output.endswith("\n"))
        if outcome.result.error:
            click.echo(f"Error: {outcome.result.error}")
        click.echo()


def _progress(labels: list[str], title: str, enabled: bool):
    if not enabled:
        return nullcontext(None)
    stream = click.get_text_stream("stderr")
    return Progress(labels, stream, tty=stream.isatty(), title=title)


def _stream_batch(run: ParallelStream) -> bool:
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


def _file_option(what: str):
    return click.option("-f", "--file", "path", type=click.Path(dir_okay=False, allow_dash=True),
                        help=f"{what} as JSON or YAML (default: stdin).")


@cli.command(short_help="Run several tasks at once (from a JSON/YAML file).")
@_file_option("Tasks")
@click.option("--max-parallel", type=click.IntRange(min=0),
              help="Tasks at once (default: the file's max_parallel, else parallel.max_workers).")
@click.option("--fail-fast/--no-fail-fast", default=None,
              help="Stop everything at the first failed task (default: the file, else parallel.fail_fast).")
@batch_options
@pass_cli
def parallel(obj: CliContext, path: str | None, max_parallel: int | None, fail_fast: bool | None,
             output_format: str | None, dry_run: bool, quiet: bool) -> None:
    """Run several tasks at once; the file is `{"tasks": [{"backend", "prompt", ...}], "max_parallel",
    "fail_fast"}` (or just the list of tasks), each task with the fields of a prompt.

    Tasks are ephemeral. Exits 1 if any task failed.
    """
    options = obj.prompt.merged(output_format=output_format, dry_run=dry_run)
    data, source = read_spec(path, "tasks")
    service = obj.service()
    spec = load_spec(ParallelRequestSchema(), data, source, "tasks",
                     obj.prompt.backend or service.config.default_backend)
    spec = dataclasses.replace(spec, stream=options.stream, dry_run=options.dry_run or spec.dry_run,
                               max_parallel=max_parallel or spec.max_parallel,
                               fail_fast=spec.fail_fast if fail_fast is None else fail_fast)
    with service_errors(source):
        batch = orchestration.parallel(service, spec)
    if spec.stream:
        exit_with(_stream_batch(batch.stream()))
    fmt = options.format
    labels = [_label(t.backend.name, n, t.request.prompt) for t, n in zip(batch.tasks, batch.names)]
    title = f"Running {len(batch.tasks)} tasks ({batch.workers} at a time{', fail-fast' if batch.fail_fast else ''})"
    with _progress(labels, title, fmt == "text" and not quiet) as progress:
        outcome = batch.run(listener=progress)
    if fmt == "json":
        echo_json(outcome.to_dict())
    else:
        count = len(batch.tasks)
        _print_sections(outcome.results,
                        lambda o: f"[{o.index + 1}/{count}] {o.backend} {one_line(o.name, 40)}".rstrip())
        rows = [(o.index + 1, o.backend, status_word(o), seconds(o.result.duration_ms),
                 one_line(o.name or o.prompt, 40)) for o in outcome.results]
        click.echo(table(("#", "BACKEND", "STATUS", "DURATION", "TASK"), rows))
        counts = outcome.summary()
        click.echo(f"Total: {counts['total_tasks']} tasks, {counts['completed']} completed, {counts['failed']} "
                   f"failed, {counts['cancelled']} cancelled ({seconds(outcome.total_duration_ms)})")
    exit_with(outcome.ok)


@cli.command(short_help="Run steps in order, each fed the previous output.")
@_file_option("Steps")
@click.option("--stop-on-failure/--no-stop-on-failure", default=None,
              help="Stop at the first failed step (default: the file's stop_on_failure, else no, as over HTTP).")
@click.option("--pass-working-dir", is_flag=True, default=None,
              help="A step without workdir runs in the previous step's workdir.")
@batch_options
@pass_cli
def chain(obj: CliContext, path: str | None, stop_on_failure: bool | None, pass_working_dir: bool | None,
          output_format: str | None, dry_run: bool, quiet: bool) -> None:
    """Run steps one after the other; `{{previous}}` in a step's prompt is the previous step's output.

    The file is `{"steps": [{"name", "backend", "prompt", ...}], "stop_on_failure", "pass_working_dir"}`
    (or just the list of steps). Steps are ephemeral. Exits 1 if a step failed.
    """
    options = obj.prompt.merged(output_format=output_format, dry_run=dry_run)
    fmt = "json" if options.format == "json" else "text"
    data, source = read_spec(path, "steps")
    service = obj.service()
    spec = load_spec(ChainRequestSchema(), data, source, "steps", obj.prompt.backend or service.config.default_backend)
    spec = dataclasses.replace(
        spec, dry_run=options.dry_run or spec.dry_run, pass_working_dir=bool(pass_working_dir or spec.pass_working_dir),
        stop_on_failure=spec.stop_on_failure if stop_on_failure is None else stop_on_failure)
    with service_errors(source):
        run = orchestration.chain(service, spec)
    labels = [_label(s.request.backend, s.name, s.request.prompt) for s in spec.steps]
    with _progress(labels, f"Running a chain of {len(spec.steps)} steps", fmt == "text" and not quiet) as progress:
        outcome = run.run(listener=progress)
    if fmt == "json":
        echo_json(outcome.to_dict())
    else:
        _print_sections(outcome.results, lambda o: f"[{o.index + 1}/{len(spec.steps)}] "
                                                   f"{o.name or f'step {o.index + 1}'} ({o.backend})")
        rows = [(o.index + 1, o.backend, status_word(o), seconds(o.result.duration_ms), o.name)
                for o in outcome.results]
        click.echo(table(("STEP", "BACKEND", "STATUS", "DURATION", "NAME"), rows))
        click.echo(f"Total: {outcome.completed_steps}/{outcome.total_steps} steps completed "
                   f"({seconds(outcome.total_duration_ms)})")
    if not outcome.ok:
        click.echo(f"Error: chain failed at step {outcome.failed_step}", err=True)
    exit_with(outcome.ok)


@cli.command(short_help="Ask several backends the same prompt.")
@click.argument("prompt", nargs=-1)
@click.option("--backends", type=BACKEND_LIST, help="Comma-separated backends to ask, e.g. claude,codex.")
@click.option("--all-backends", is_flag=True, help="Ask every available backend.")
@click.option("--sequential", is_flag=True, help="One backend after the other instead of all at once.")
@click.option("-m", "--model", help="Model for every backend.")
@click.option("-w", "--workdir", type=click.Path(file_okay=False), help="Directory the CLIs run in.")
@batch_options
@pass_cli
def compare(obj: CliContext, prompt: tuple[str, ...], backends: list[str] | None, all_backends: bool,
            sequential: bool, model: str | None, workdir: str | None, output_format: str | None,
            dry_run: bool, quiet: bool) -> None:
    """Ask several backends the same PROMPT (or stdin) and show their answers side by side.

    Exits 1 if any backend failed or was not available.
    """
    options = obj.prompt.merged(model=model, workdir=workdir, output_format=output_format, dry_run=dry_run)
    if bool(backends) == all_backends:
        raise click.UsageError("give either --backends a,b or --all-backends")
    text = prompt_text(prompt)
    service = obj.service()
    names = backends or []
    if all_backends:
        names = [b for b in BACKEND_NAMES if options.dry_run or service.executable(b)]
        for skipped in (b for b in BACKEND_NAMES if b not in names):
            click.echo(f"Warning: skipping {skipped}: not available", err=True)
        if not names:
            raise Failure("no backend is available")
    spec = CompareSpec(text, names, model=options.model or "", workdir=absolute(options.workdir),
                       sequential=sequential, dry_run=options.dry_run, stream=options.stream)
    with service_errors():
        batch = orchestration.compare(service, spec)
    if spec.stream:
        exit_with(_stream_batch(batch.stream()))
    fmt = options.format
    title = f"Comparing {len(names)} backends: {', '.join(names)} | prompt: {one_line(text, 60)}"
    with _progress(names, title, fmt == "text" and not quiet) as progress:
        outcome = batch.run(listener=progress)
    if fmt == "json":
        echo_json(outcome.compare_dict(text, names))
    else:
        _print_sections(outcome.results, lambda o: f"[{o.backend}]")
        rows = [(o.backend, status_word(o), seconds(o.result.duration_ms), o.result.model or "(default)")
                for o in outcome.results]
        click.echo(table(("BACKEND", "STATUS", "DURATION", "MODEL"), rows))
        click.echo(f"Total time: {seconds(outcome.total_duration_ms)}")
    exit_with(outcome.ok)
