"""The ``clinvk`` click group, its default command (an unknown first word is the prompt) and ``main``."""

from __future__ import annotations

import difflib
import signal
import sys

import click

from ..runner import terminate_all
from . import context
from .context import EXIT_INTERRUPTED, EXIT_OK, CliContext, PromptOptions, pass_cli
from .params import prompt_options

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  a backend run failed (error, timeout, CLI not available); clinvk jobs: the job
     did not complete, or the server failed, refused the key or was busy
  2  usage error (bad option, file, config or session id)
  130  interrupted (Ctrl+C); running CLIs are killed
  143, 129  stopped by SIGTERM, SIGHUP (terminal closed); running CLIs are killed"""


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
@pass_cli
@click.pass_context
def cli(ctx: click.Context, obj: CliContext, config_path: str | None, **options) -> None:
    """Run the claude, codex and gemini CLIs from one command line and one HTTP API.

    `clinvk PROMPT` runs a prompt on a backend and stores it as a session; without PROMPT (or with
    `-`) the prompt is read from stdin. The commands below do the rest.
    """
    obj.config_path = config_path
    obj.prompt = PromptOptions(**options)
    if ctx.invoked_subcommand is None:
        if context.stdin_is_tty() and not config_path and not any(options.values()):
            click.echo(ctx.get_help())
            ctx.exit(EXIT_OK)
        ctx.invoke(cli.get_command(ctx, "prompt"))


class Stopped(BaseException):
    """SIGTERM or SIGHUP (a service manager, ``kill``, the terminal or SSH connection closing), raised in
    the main thread as Ctrl+C raises KeyboardInterrupt, so that the same unwinding ends the running
    CLIs: they run in sessions of their own, and whoever stopped us did not signal them."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _on_stop_signal(signum, frame) -> None:
    for sig in STOP_SIGNALS:  # a second one must not cut the cleanup short
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> None:
    """The console script: like click's standalone mode, but Ctrl+C exits 130, SIGTERM 143 and SIGHUP
    129, each after the CLIs are killed. (``clinvk serve``'s gunicorn installs its own handlers.)"""
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:  # an ignored one (``nohup``) stays ignored
            signal.signal(sig, _on_stop_signal)
    try:
        code = cli.main(prog_name="clinvk", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        terminate_all("interrupted")
        click.echo("\nInterrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Stopped as stop:
        terminate_all(f"stopped by {signal.Signals(stop.signum).name}")
        try:
            click.echo(f"\n{signal.strsignal(stop.signum)}.", err=True)
        except OSError:
            pass  # the terminal is gone (SIGHUP)
        sys.exit(128 + stop.signum)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # `clinvk ... | head`
        sys.stderr.close()
        sys.exit(EXIT_OK)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
