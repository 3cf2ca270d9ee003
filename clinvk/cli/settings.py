"""``clinvk config``: show the effective configuration, or set one key in the config file."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import yaml

from ..config import BACKEND_NAMES, ConfigError, default_config_path, set_config_value
from .app import cli
from .context import EXIT_BACKEND_FAILED, EXIT_USAGE, CliContext, Failure, pass_cli
from .prompt import echo_json


@cli.group("config")
def config_group() -> None:
    """Show the effective configuration or change the config file."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@pass_cli
def config_show(obj: CliContext, as_json: bool) -> None:
    """Show the effective configuration (file + environment + defaults; secrets hidden)."""
    config = obj.load_config()
    data = config.to_dict()
    available = {}
    for name in BACKEND_NAMES:
        backend = config.backend(name)
        available[name] = bool(backend.enabled and shutil.which(backend.command or name,
                                                                 path=(backend.env.get("PATH") or None)))
    if as_json:
        echo_json({"home": str(config.home), "config_file": str(config.config_path or ""),
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
@pass_cli
def config_set(obj: CliContext, key: str, value: str) -> None:
    """Set KEY (dotted, e.g. server.port) to VALUE in the config file, after checking both."""
    path = obj.config_path
    try:
        set_config_value(path, key, value)
    except ConfigError as exc:
        raise Failure(f"configuration error: {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise Failure(f"cannot write the config file: {exc}", EXIT_BACKEND_FAILED) from None
    click.echo(f"Set {key} = {value} in {Path(path).expanduser() if path else default_config_path()}")
