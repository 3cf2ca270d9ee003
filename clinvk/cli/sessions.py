"""``clinvk sessions``: list, show, delete and clean up stored sessions."""

from __future__ import annotations

import click

from ..config import BACKEND_NAMES
from ..scratch import remove_scratch
from ..sessions import STATUSES
from .app import cli
from .context import EXIT_USAGE, CliContext, Failure, pass_cli
from .output import ago, one_line, table
from .params import AGE
from .prompt import echo_json


@cli.group()
def sessions() -> None:
    """List, show, delete and clean up stored sessions."""


def _find(store, session_id: str):
    try:
        return store.get(session_id)
    except (LookupError, ValueError) as exc:
        raise Failure(str(exc), EXIT_USAGE) from None


@sessions.command("list")
@click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES), help="Only this backend's sessions.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--owner", metavar="TENANT", help="Only this tenant's sessions (`local`: the command line's).")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N sessions.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@pass_cli
def sessions_list(obj: CliContext, backend: str | None, status: str | None, owner: str | None, limit: int,
                  as_json: bool) -> None:
    """List sessions (every tenant's), most recently used first."""
    found, total = obj.store().list(backend=backend, status=status, owner=owner, limit=limit)
    if as_json:
        echo_json({"sessions": [s.to_dict() for s in found], "total": total})
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
@pass_cli
def sessions_show(obj: CliContext, session_id: str, as_json: bool) -> None:
    """Show one session (SESSION_ID: an id or a unique prefix)."""
    session = _find(obj.store(), session_id)
    data = session.to_dict()
    if as_json:
        echo_json(data)
        return
    usage = session.token_usage
    lines = [("ID", session.id), ("Backend", session.backend), ("Model", session.model or ""),
             ("Status", session.status), ("Owner", session.owner), ("Created", data["created_at"]),
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
@pass_cli
def sessions_delete(obj: CliContext, session_id: str) -> None:
    """Delete one session and its CLI home (SESSION_ID: an id or a unique prefix)."""
    try:
        session = obj.service().delete_session(session_id)
    except (LookupError, ValueError) as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    remove_scratch(obj.config().home, session.working_dir)
    click.echo(f"Deleted session {session.id}.")


@sessions.command("clean")
@click.option("--older-than", "older_than", type=AGE, metavar="AGE",
              help="Delete sessions not used for AGE: 30d, 12h, 2w (default: session.retention_days).")
@pass_cli
def sessions_clean(obj: CliContext, older_than: float | None) -> None:
    """Delete sessions that were not used for a while."""
    config = obj.config()
    if older_than is None:
        if config.session.retention_days <= 0:
            raise click.UsageError("session.retention_days is 0 (keep forever): give --older-than AGE")
        older_than = float(config.session.retention_days)
    removed = obj.service().clean_sessions(older_than)
    click.echo(f"Deleted {removed} session(s) not used for {older_than:g} days.")
