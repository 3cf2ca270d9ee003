"""The workdir policy: absolute, symlinks resolved, inside the allowed prefixes, outside the blocked ones,
and only then an existing directory.

The policy is checked before the filesystem is asked anything about the path, and every refusal
(blocked, outside the allowed prefixes, missing, not a directory) reads the same, so the answer
does not tell a client which paths exist where it may not look.
"""

from __future__ import annotations

import os


class WorkdirError(ValueError):
    """A workdir the policy refuses; the message says why (without telling blocked from missing)."""


def is_under(path: str, prefix: str) -> bool:
    """Path-boundary aware prefix test: /etcfoo is not under /etc, everything is under /.

    A prefix ending in ``*`` matches by name: ``~/.claude*`` covers ``~/.claude`` and ``~/.claude-work``."""
    if prefix.endswith("*"):
        stem = os.path.normpath(prefix[:-1])
        return path.startswith(stem)
    prefix = os.path.normpath(prefix)
    return prefix == "/" or path == prefix or path.startswith(prefix + os.sep)


def expand(prefix: str) -> str:
    """``~/…`` is the service user's home directory."""
    return os.path.expanduser(prefix) if prefix.startswith("~") else prefix


def _matches(real: str, prefix: str) -> bool:
    prefix = expand(prefix)
    if prefix.endswith("*"):
        return is_under(real, os.path.realpath(prefix[:-1]) + "*") or is_under(real, prefix)
    return is_under(real, os.path.realpath(prefix)) or is_under(real, prefix)


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
    refused = WorkdirError(f"{workdir} is not a directory this server may run in (it must exist, lie inside "
                           "server.allowed_workdir_prefixes if set, and outside server.blocked_workdir_prefixes)")
    real = os.path.realpath(workdir)
    if any(_matches(real, prefix) or _matches(os.path.normpath(workdir), prefix) for prefix in blocked):
        raise refused
    if allowed and not any(is_under(real, os.path.realpath(expand(p))) for p in allowed):
        raise refused
    if not os.path.isdir(real):
        raise refused
    return real
