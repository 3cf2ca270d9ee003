"""Which runs a warm process can serve, and how to start one: a :class:`Recipe` per launch.

The pool key is the launch itself (argv, environment, working directory, as
:meth:`clinvk.lifecycle.RunLifecycle.launch` decided them, whatever wrapper or home it added), minus
the prompt, which travels on stdin. Two runs with the same key would start the very same process.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Hashable

from ..backends import Invocation
from . import claude, codex
from .protocol import Protocol

#: backends with a long-lived mode that reproduces the one-shot request exactly
POOLABLE = ("claude", "codex")


@dataclass(frozen=True)
class Recipe:
    backend: str
    key: Hashable
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    protocol: Callable[[], Protocol]


def recipe_for(backend: str, launch: Invocation, executable: str) -> Recipe | None:
    """How to start a warm process that can serve ``launch``; None when none can."""
    argv = launch.argv
    try:
        at = argv.index(executable)
    except ValueError:
        return None
    key = (backend, tuple(argv), tuple(sorted(launch.env.items())), launch.cwd)
    if backend == "claude":
        warm = claude.warm_argv(argv, at)
        factory: Callable[[], Protocol] = claude.ClaudeProtocol
    elif backend == "codex":
        warm, options = codex.warm_argv(argv, at), codex.thread_options(argv, at)
        cwd, env = launch.cwd or "", launch.env
        factory = lambda: codex.CodexProtocol(options, cwd, codex_version(executable, tuple(sorted(env.items()))))
    else:
        return None
    if warm is None:
        return None
    return Recipe(backend, key, warm, launch.env, launch.cwd, factory)


@lru_cache(maxsize=16)
def codex_version(executable: str, env: tuple[tuple[str, str], ...]) -> str:
    """The version codex exec puts in its user agent: from the npm package the executable belongs
    to (no process needed), else from ``codex --version`` ("codex-cli 0.169.0" -> "0.169.0")."""
    script = Path(os.path.realpath(executable))
    for directory in (script.parent, script.parent.parent):
        try:
            package = json.loads((directory / "package.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(package, dict) and package.get("name") == "@openai/codex" and package.get("version"):
            return str(package["version"])
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, env=dict(env),
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "0.0.0"
    return out.strip().rsplit(" ", 1)[-1] or "0.0.0"
