"""The workdir policy: absolute, existing, symlinks resolved, inside the allowed prefixes, outside the blocked ones."""

from __future__ import annotations

import os


class WorkdirError(ValueError):
    """A workdir the policy refuses; the message says why."""


def is_under(path: str, prefix: str) -> bool:
    """Path-boundary aware prefix test: /etcfoo is not under /etc, everything is under /."""
    prefix = os.path.normpath(prefix)
    return prefix == "/" or path == prefix or path.startswith(prefix + os.sep)


def resolve_workdir(workdir: str, allowed: list[str] | tuple[str, ...],
                    blocked: list[str] | tuple[str, ...]) -> str:
    """Return the resolved real path of ``workdir`` or raise :class:`WorkdirError`.

    The resolved path is what the CLI runs in, so a symlink cannot smuggle a blocked directory
    past the check between validation and use.
    """
    if "\x00" in workdir:
        raise WorkdirError("must not contain NUL bytes")
    if not os.path.isabs(workdir):
        raise WorkdirError(f"must be an absolute path (got {workdir!r})")
    real = os.path.realpath(workdir)
    if not os.path.exists(real):
        raise WorkdirError(f"does not exist: {workdir}")
    if not os.path.isdir(real):
        raise WorkdirError(f"is not a directory: {workdir}")
    for prefix in blocked:
        if is_under(real, os.path.realpath(prefix)) or is_under(real, prefix):
            raise WorkdirError(f"not allowed: {real} is under the blocked prefix {prefix}")
    if allowed and not any(is_under(real, os.path.realpath(p)) for p in allowed):
        raise WorkdirError(f"not allowed: {real} is outside the allowed prefixes ({', '.join(allowed)})")
    return real
