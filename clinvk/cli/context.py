"""What every command shares: the typed context object, exit codes, and the config, service and store
of a command-line run."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import click

from ..config import Config, ConfigError, load_config
from ..errors import ServiceError, Unavailable
from ..gate import GateFull
from ..redact import redact_uri
from ..service import Service
from ..sessions import SessionStore, open_store

EXIT_OK, EXIT_BACKEND_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
# unified_flags.command_timeout_secs 0 means "no timeout" on the command line; the runner needs a number.
NO_TIMEOUT_SECS = 30 * 86400


class Failure(click.ClickException):
    """One line on stderr (``Error: ...``) and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_BACKEND_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class PromptOptions:
    """The options of a prompt; given before the prompt (``clinvk -b codex PROMPT``) or after it."""

    backend: str | None = None
    model: str | None = None
    workdir: str | None = None
    output_format: str | None = None
    dry_run: bool = False
    ephemeral: bool = False
    continue_: bool = False

    def merged(self, **own) -> "PromptOptions":
        """A command's own options, each falling back to the one given before the command."""
        return PromptOptions(**{name: own.get(name) or getattr(self, name) for name in self.__dataclass_fields__})

    @property
    def format(self) -> str:
        return self.output_format or "text"

    @property
    def stream(self) -> bool:
        return self.format == "stream-json"


@dataclass
class CliContext:
    """The group's options, passed to every command with :data:`pass_cli`."""

    config_path: str | None = None
    prompt: PromptOptions = field(default_factory=PromptOptions)

    def load_config(self, path: str | None = None, overrides: dict | None = None,
                    exit_code: int = EXIT_USAGE) -> Config:
        try:
            return load_config(path or self.config_path, overrides=overrides)
        except ConfigError as exc:
            raise Failure(f"configuration error: {exc}", exit_code) from None

    def config(self) -> Config:
        """The config for a command-line run: config errors exit 2, runs are timed by
        unified_flags.command_timeout_secs (0: none), and neither the workdir policy nor the sandbox
        (a server's protections against its clients) apply to the local user."""
        config = self.load_config()
        server = config.server
        server.request_timeout_secs = config.unified_flags.command_timeout_secs or NO_TIMEOUT_SECS
        server.allowed_workdir_prefixes, server.blocked_workdir_prefixes = [], []
        config.run.sandbox = "off"
        return config

    def service(self) -> Service:
        config = self.config()
        return Service(config, self._open_store(config))

    def store(self) -> SessionStore:
        return self._open_store(self.config())

    @staticmethod
    def _open_store(config: Config) -> SessionStore:
        try:
            return open_store(config.session_store, pool_size=config.session.store_pool_size)
        except Exception as exc:  # e.g. a directory where the file should be, a newer schema
            raise Failure(f"cannot open the session store {redact_uri(str(config.session_store))}: {exc}") from None


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


@contextmanager
def service_errors(source: str = "") -> Iterator[None]:
    """ServiceError → exit 2 (bad request) or 1 (backend not available); a busy gate → 1."""
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


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def read_stdin(what: str = "prompt") -> str:
    if stdin_is_tty():
        raise click.UsageError(f"no {what} given: pass it as an argument or pipe it on stdin")
    return click.get_text_stream("stdin").read()


def prompt_text(args: tuple[str, ...] | list[str]) -> str:
    """The prompt: the one argument, or stdin when there is none or it is ``-``."""
    if len(args) > 1:
        raise click.UsageError("give the prompt as one argument (quote it): clinvk \"" + " ".join(args) + "\"")
    text = read_stdin() if not args or args[0] == "-" else args[0]
    if not text.strip():
        raise click.UsageError("the prompt is empty")
    return text


def absolute(path: str | None) -> str:
    """A path given on the command line, relative to the current directory; "" for none."""
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def exit_with(ok: bool) -> None:
    sys.exit(EXIT_OK if ok else EXIT_BACKEND_FAILED)
