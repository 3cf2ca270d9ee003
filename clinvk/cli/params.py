"""Option types and shared option sets of the command line: values are parsed here, not in commands."""

from __future__ import annotations

import re

import click

from ..config import BACKEND_NAMES

FORMATS = ("text", "json", "stream-json")


class AgeType(click.ParamType):
    """``30d``, ``30`` (days), ``12h``, ``2w`` → days (a float > 0)."""

    name = "age"
    _UNITS = {"": 1, "d": 1, "h": 1 / 24, "w": 7}

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, (int, float)):
            days = float(value)
        else:
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*", value or "")
            if not match:
                self.fail(f"{value!r} is not an age such as 30d, 12h or 2w", param, ctx)
            days = float(match.group(1)) * self._UNITS[match.group(2)]
        if days <= 0:
            self.fail("must be more than 0 (0 would delete every session)", param, ctx)
        return days


class BackendListType(click.ParamType):
    """``claude,codex`` → ``["claude", "codex"]``; every name must be a known backend."""

    name = "backends"

    def convert(self, value, param, ctx) -> list[str]:
        if isinstance(value, list):
            return value
        names = [b.strip() for b in value.split(",") if b.strip()]
        if not names:
            self.fail("no backend given", param, ctx)
        unknown = [b for b in names if b not in BACKEND_NAMES]
        if unknown:
            self.fail(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKEND_NAMES)})", param, ctx)
        return names


AGE = AgeType()
BACKEND_LIST = BackendListType()


def _apply(func, options):
    for option in reversed(options):
        func = option(func)
    return func


def output_format_options(help_text: str):
    """``-o/--output-format`` and ``--json`` (the same as ``-o json``), both filling ``output_format``."""
    return [
        click.option("-o", "--output-format", type=click.Choice(FORMATS), help=help_text),
        click.option("--json", "output_format", flag_value="json", help="Same as --output-format json."),
    ]


def prompt_options(func):
    """Options of a prompt, accepted before the prompt (``clinvk -b codex PROMPT``) and after it."""
    return _apply(func, [
        click.option("-b", "--backend", type=click.Choice(BACKEND_NAMES),
                     help="Backend to run (default: default_backend in the config, claude)."),
        click.option("-m", "--model", help="Model for the backend."),
        click.option("-w", "--workdir", type=click.Path(file_okay=False),
                     help="Directory the CLI runs in (default: the current directory)."),
        *output_format_options("text (default): the answer; json: one JSON object; stream-json: NDJSON events."),
        click.option("--dry-run", is_flag=True, help="Print the command line instead of running it."),
        click.option("--ephemeral", is_flag=True, help="Store no session (and leave no CLI transcript)."),
        click.option("-c", "--continue", "continue_", is_flag=True,
                     help="Continue the most recent session (of --backend, if given) instead of starting one."),
    ])


def batch_options(func):
    """Options of parallel, chain and compare."""
    return _apply(func, [
        *output_format_options("text (default): progress, answers and a summary; json: one JSON object as the "
                               "HTTP API answers; stream-json: NDJSON events tagged with `task`."),
        click.option("--dry-run", is_flag=True, help="Print the command lines instead of running them."),
        click.option("-q", "--quiet", is_flag=True, help="No progress display."),
    ])
