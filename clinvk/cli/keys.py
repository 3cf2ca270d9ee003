"""``clinvk keys``: API keys of tenants, stored in the config file as SHA-256 digests only."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import click

from ..apikeys import key_id
from ..config import ConfigError, default_config_path, set_config_value, unset_config_value
from ..tenants import is_tenant_name, split_key_entry
from .app import cli
from .context import EXIT_BACKEND_FAILED, EXIT_USAGE, CliContext, Failure, pass_cli
from .output import table
from .prompt import echo_json

KEY_PREFIX = "ck-"  # recognisable in a secret scanner's findings


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _tenant_name(name: str) -> str:
    if not is_tenant_name(name):
        raise click.BadParameter("1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or "
                                 "digit", param_hint="NAME")
    return name


def _file(obj: CliContext) -> Path:
    return Path(obj.config_path).expanduser() if obj.config_path else default_config_path()


@cli.group("keys")
def keys_group() -> None:
    """Add, list and remove the API keys of tenants (who may use `clinvk serve`).

    A key belongs to a tenant: its sessions, quotas and workdirs are its own. The config file keeps
    only the SHA-256 digest of each key (tenants.NAME.key_sha256); settings such as
    tenants.NAME.admin are set with `clinvk config set`. A running server reads keys at start.
    """


@keys_group.command("add")
@click.argument("name")
@pass_cli
def keys_add(obj: CliContext, name: str) -> None:
    """Create a random key for tenant NAME: print it once, store its digest."""
    name = _tenant_name(name)
    config = obj.load_config()
    if config.tenants.get(name) and config.tenants[name].key_sha256:
        raise Failure(f"tenant {name!r} already has a key in {_file(obj)}: `clinvk keys remove {name}` first",
                      EXIT_USAGE)
    key = new_key()
    try:
        set_config_value(obj.config_path, f"tenants.{name}.key_sha256", hashlib.sha256(key.encode()).hexdigest())
    except ConfigError as exc:
        raise Failure(f"configuration error: {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise Failure(f"cannot write the config file: {exc}", EXIT_BACKEND_FAILED) from None
    click.echo(key)
    click.echo(f"Stored the SHA-256 digest of the new key of tenant {name!r} in {_file(obj)}. The key is shown "
               "only this once; restart the server to use it.", err=True)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@pass_cli
def keys_list(obj: CliContext, as_json: bool) -> None:
    """List the tenants that have keys (never the keys): config file and CLINVK_API_KEYS."""
    config = obj.load_config()
    rows: dict[str, dict] = {}
    for name, tenant in config.tenants.items():
        rows[name] = {"name": name, "source": "config file" if tenant.key_sha256 else "",
                      "key_id": tenant.key_sha256[:12], "admin": tenant.admin,
                      "max_concurrent_runs": tenant.max_concurrent_runs, "rate_limit_rps": tenant.rate_limit_rps}
    for entry in config.server.api_keys:
        named, key = split_key_entry(entry)
        name = named or key_id(key)
        row = rows.setdefault(name, {"name": name, "source": "", "key_id": "", "admin": False,
                                     "max_concurrent_runs": 0, "rate_limit_rps": 0})
        row["source"] = ", ".join(filter(None, (row["source"], "CLINVK_API_KEYS")))
        row["key_id"] = row["key_id"] or key_id(key)
    found = sorted((r for r in rows.values() if r["source"]), key=lambda r: r["name"])
    if as_json:
        echo_json({"tenants": found, "gopass_path": config.server.api_keys_gopass_path})
        return
    if config.server.api_keys_gopass_path:
        click.echo(f"(keys in gopass entry {config.server.api_keys_gopass_path} are not listed)")
    if not found:
        click.echo("No keys: the server is open to anyone who can reach it (tenant 'local').")
        return
    click.echo(table(("TENANT", "SOURCE", "KEY ID", "ADMIN", "MAX RUNS", "RATE/S"),
                     [(r["name"], r["source"], r["key_id"], "yes" if r["admin"] else "",
                       r["max_concurrent_runs"] or "-", r["rate_limit_rps"] or "-") for r in found]))


@keys_group.command("remove")
@click.argument("name")
@pass_cli
def keys_remove(obj: CliContext, name: str) -> None:
    """Remove tenant NAME's key from the config file (its other settings stay)."""
    name = _tenant_name(name)
    try:
        removed = unset_config_value(obj.config_path, f"tenants.{name}.key_sha256")
    except ConfigError as exc:
        raise Failure(f"configuration error: {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise Failure(f"cannot write the config file: {exc}", EXIT_BACKEND_FAILED) from None
    if not removed:
        raise Failure(f"tenant {name!r} has no key in {_file(obj)}", EXIT_USAGE)
    click.echo(f"Removed the key of tenant {name!r} from {_file(obj)}; restart the server for it to take effect.")
