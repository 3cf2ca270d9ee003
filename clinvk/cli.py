"""The `clinvk` command line (click). It uses the same service layer as the HTTP server."""

from __future__ import annotations

import sys

import click

from . import __version__
from .config import ConfigError, load_config

EXIT_OK, EXIT_BACKEND_FAILED, EXIT_USAGE = 0, 1, 2


def _load(config_path: str | None, overrides: dict | None = None):
    try:
        return load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $CLINVK_CONFIG or ~/.clinvk/config.yaml).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Run the claude, codex and gemini CLIs from one command line and one HTTP API.

    Exit codes: 0 success, 1 backend or server failure, 2 usage error.
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


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
    try:
        cli.main(prog_name="clinvk", standalone_mode=True)
    except click.ClickException as exc:  # pragma: no cover - click handles these in standalone mode
        exc.show()
        sys.exit(EXIT_BACKEND_FAILED)


if __name__ == "__main__":
    main()
