"""Which runs a warm process can serve, and how to start one: a :class:`Recipe` per launch.

The pool key is the launch before its isolation (argv, environment, working directory, as
:meth:`clinvk.lifecycle.RunLifecycle.launch` decided them), minus the prompt, which travels on stdin:
two runs with the same key would start the very same process. Each warm process is then isolated
on its own, as a cold ephemeral run is (``isolate``: a throwaway CLI home, the sandbox), so no
state passes from one run to another.
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
from .process import WarmProcess
from .protocol import Protocol

#: backends with a long-lived mode that reproduces the one-shot request exactly
POOLABLE = ("claude", "codex")


#: (the launch before isolation) -> (the isolated launch, what to release when its process ends)
Isolate = Callable[[Invocation], "tuple[Invocation, Callable[[], None] | None]"]


@dataclass(frozen=True)
class WarmLaunch:
    backend: str
    key: Hashable
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    protocol: Callable[[], Protocol]


@dataclass(frozen=True)
class Recipe:
    backend: str
    key: Hashable
    launch: Invocation  # before isolation
    executable: str
    isolate: Isolate | None = None

    def start(self) -> WarmProcess:
        """A new warm process for this key, in a home (and sandbox) of its own."""
        launch, release = self.isolate(self.launch) if self.isolate else (self.launch, None)
        warm = warm_launch(self.backend, launch, self.executable)
        if warm is None:  # the isolated launch no longer names the CLI: cannot happen with clinvk's wrappers
            if release:
                release()
            raise OSError(f"{self.backend}: the isolated launch cannot be started warm")
        try:
            process = WarmProcess(warm.argv, warm.env, warm.cwd, warm.protocol())
        except BaseException:
            if release:
                release()
            raise
        process.launched = launch
        process.on_close = release  # the lifecycle that takes the process chains its own
        return process


def recipe_for(backend: str, launch: Invocation, executable: str, isolate: Isolate | None = None) -> Recipe | None:
    """How to start warm processes that can serve ``launch`` (before isolation); None when none can."""
    if warm_launch(backend, launch, executable) is None:
        return None
    key = (backend, tuple(launch.argv), tuple(sorted(launch.env.items())), launch.cwd)
    return Recipe(backend, key, launch, executable, isolate)


def warm_launch(backend: str, launch: Invocation, executable: str) -> WarmLaunch | None:
    """The long-lived form of ``launch``; None when its backend or flags have none."""
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
    return WarmLaunch(backend, key, warm, launch.env, launch.cwd, factory)


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
