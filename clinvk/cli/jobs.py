"""``clinvk jobs``: submit, list, show, follow and cancel jobs on a clinvk server (``/api/v1/jobs``)."""

from __future__ import annotations

import json
import sys

import click

from ..config import BACKEND_NAMES
from ..jobs.model import FINISHED, KINDS, STATUSES
from .app import cli
from .batch import read_spec
from .context import EXIT_BACKEND_FAILED, EXIT_OK, prompt_text
from .job_progress import JobProgress
from .output import one_line, table
from .prompt import echo_json
from .remote import Server, server_option


@cli.group()
def jobs() -> None:
    """Runs on a clinvk server that outlive the connection: submit, list, show, logs, cancel.

    The server is --server URL (or $CLINVK_SERVER, default http://127.0.0.1:8080); its API key, if it
    wants one, comes from $CLINVK_API_KEY.
    """


def follow(server: Server, job_id: str, after: int = 0) -> dict:
    """Print the job's events until it ends (text on stdout, progress on stderr); returns the job."""
    progress = JobProgress(job_id, sys.stdout, sys.stderr, tty=sys.stderr.isatty())
    for event in server.lines(f"/api/v1/jobs/{job_id}/events?after={after}"):
        progress.feed(event)
    job = server.call("GET", f"/api/v1/jobs/{job_id}")
    progress.finish(job)
    return job


def exit_for(job: dict) -> None:
    sys.exit(EXIT_OK if job["status"] == "completed" else EXIT_BACKEND_FAILED)


@jobs.command("submit")
@click.argument("prompt", nargs=-1)
@click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES), help="Backend of a prompt job.")
@click.option("-m", "--model", help="Model of a prompt job.")
@click.option("-w", "--workdir", help="Working directory (on the server) of a prompt job.")
@click.option("--file", "path", type=click.Path(dir_okay=False, allow_dash=True),
              help="A JSON or YAML request body instead of PROMPT: a prompt, or parallel/chain/compare "
                   "with `kind`, as POST /api/v1/jobs takes it ('-' = stdin).")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Follow the job until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@server_option
def jobs_submit(prompt: tuple[str, ...], backend: str | None, model: str | None, workdir: str | None,
                path: str | None, follow_: bool, as_json: bool, server: str) -> None:
    """Submit a job: PROMPT (or --file BODY). Prints its id; -f follows it to the end."""
    remote = Server(server)
    if path:
        if prompt:
            raise click.UsageError("give PROMPT or --file, not both")
        body, _ = read_spec(path, "tasks")
    else:
        body = {"prompt": prompt_text(prompt)}
    for name, value in (("backend", backend), ("model", model), ("workdir", workdir)):
        if value:
            body[name] = value
    job = remote.call("POST", "/api/v1/jobs", body)
    if as_json and not follow_:
        echo_json(job)
        return
    click.echo(job["id"])
    if follow_:
        exit_for(follow(remote, job["id"]))


@jobs.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs with this status.")
@click.option("--kind", type=click.Choice(KINDS), help="Only jobs of this kind.")
@click.option("-n", "--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@server_option
def jobs_list(status: str | None, kind: str | None, limit: int, as_json: bool, server: str) -> None:
    """List your jobs, newest first."""
    query = "&".join(f"{k}={v}" for k, v in (("status", status), ("kind", kind), ("limit", limit)) if v)
    page = Server(server).call("GET", f"/api/v1/jobs?{query}")
    if as_json:
        echo_json(page)
        return
    if not page["jobs"]:
        click.echo("No jobs found.")
        return
    rows = [(j["id"][:8], j["kind"], j["status"], j["created_at"][:19].replace("T", " "), j["events"],
             one_line(j.get("error") or "", 50)) for j in page["jobs"]]
    click.echo(table(("ID", "KIND", "STATUS", "CREATED (UTC)", "EVENTS", "ERROR"), rows))
    if page["total"] > len(page["jobs"]):
        click.echo(f"({len(page['jobs'])} of {page['total']}; --limit N shows more)")


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@server_option
def jobs_show(job_id: str, as_json: bool, server: str) -> None:
    """Show a job: status, timings and, once finished, its result."""
    job = Server(server).call("GET", f"/api/v1/jobs/{job_id}")
    if as_json:
        echo_json(job)
        return
    for label, key in (("id", "id"), ("kind", "kind"), ("status", "status"), ("created", "created_at"),
                       ("started", "started_at"), ("finished", "finished_at"), ("session", "session_id"),
                       ("events", "events"), ("error", "error")):
        if job.get(key) is not None:
            click.echo(f"{label + ':':<10}{job[key]}")
    result = job.get("result") or {}
    if "output" in result:
        click.echo("\n" + result["output"])
    elif result:
        echo_json(result)


@jobs.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep following until the job ends.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only events after this position.")
@click.option("--json", "as_json", is_flag=True, help="The events as NDJSON (with `seq`).")
@server_option
def jobs_logs(job_id: str, follow_: bool, after: int, as_json: bool, server: str) -> None:
    """Print a job's events: its answer as text (or --json events); -f follows it live."""
    remote = Server(server)
    if as_json:
        live = "true" if follow_ else "false"
        for event in remote.lines(f"/api/v1/jobs/{job_id}/events?after={after}&follow={live}"):
            if event.get("type") != "keepalive":
                click.echo(json.dumps(event, ensure_ascii=False))
        return
    if follow_:
        exit_for(follow(remote, job_id, after))
    progress = JobProgress(job_id, sys.stdout, sys.stderr, tty=False)
    for event in remote.lines(f"/api/v1/jobs/{job_id}/events?after={after}&follow=false"):
        progress.feed(event)
    job = remote.call("GET", f"/api/v1/jobs/{job_id}")
    if job["status"] in FINISHED:
        progress.finish(job)


@jobs.command("cancel")
@click.argument("job_id")
@server_option
def jobs_cancel(job_id: str, server: str) -> None:
    """Cancel a queued or running job (its CLI processes end); a finished job is deleted."""
    remote = Server(server)
    answer = remote.call("DELETE", f"/api/v1/jobs/{job_id}")
    if answer.get("deleted"):
        click.echo(f"job {job_id}: deleted")
        return
    click.echo(f"job {answer['id']}: {answer['status']}")
    if answer["status"] not in FINISHED:
        click.echo("(cancellation requested: it ends shortly)")
