"""``clinvk version`` and ``clinvk serve`` (gunicorn, in-process)."""

from __future__ import annotations

import sys

import click

from .. import __version__
from .app import cli
from .context import EXIT_BACKEND_FAILED, CliContext, pass_cli


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
@pass_cli
def serve(obj: CliContext, host, port, workers, threads, config_path) -> None:
    """Start the HTTP API server (gunicorn, gthread workers).

    Exits 0 on Ctrl+C or SIGTERM, 1 when the server cannot start (port in use, bad config).
    """
    # Imported here: gunicorn and Flask are only needed by this command, and every other command
    # (a prompt in a shell loop) would pay for loading them.
    from ..serve import PortUnavailable, run

    server = {k: v for k, v in {"host": host, "port": port, "workers": workers, "threads": threads}.items() if v}
    config = obj.load_config(config_path, {"server": server} if server else None, exit_code=EXIT_BACKEND_FAILED)
    try:
        sys.exit(run(config))
    except PortUnavailable as exc:
        click.echo(f"Error: {exc.strerror}", err=True)
        sys.exit(EXIT_BACKEND_FAILED)
