"""The bubblewrap sandbox around each CLI run (``run.sandbox``: ``auto``, ``bwrap`` or ``off``).

Inside, the CLI sees: the system read-only (``/usr`` and a short list of ``/etc`` files: not
``/etc/shadow``), its own install read-only (and its interpreter's, for a ``#!/usr/bin/env node``
script outside ``/usr``), its session home and its workdir read-write, a private ``/tmp``, a
``/proc`` and ``/dev`` of its own, and everything else read-only and empty: not clinvk's state
directory (the session database, other sessions' homes), not the service user's home. The network
stays (the CLI needs its vendor API). Namespaces: ``--unshare-all --share-net``, so its processes
see only each other.

``--new-session`` is left out on purpose: clinvk already starts the CLI in a session of its own with
pipes, no terminal, and a ``killpg`` then reaches the CLI itself, which can end gracefully on SIGTERM.
``--die-with-parent`` takes the sandbox down if the clinvk worker dies.

``auto`` runs a probe once per process: if ``bwrap`` is missing or cannot create its namespaces here
(many container runtimes forbid user namespaces), runs are not sandboxed and a warning says so.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

from .backends import Invocation

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECS = 10.0
# /etc entries a CLI needs (name resolution, TLS roots, users, the dynamic linker, time zone).
ETC_ENTRIES = ("resolv.conf", "hosts", "passwd", "group", "nsswitch.conf", "ssl", "ca-certificates",
               "localtime", "os-release", "alternatives", "ld.so.cache", "bash.bashrc", "profile", "profile.d",
               "debian_version", "host.conf", "gai.conf")
# Already visible through the read-only /usr (and its /bin, /lib... links): no bind needed.
SYSTEM_PREFIXES = ("/usr/",)


@dataclass(frozen=True)
class SandboxStatus:
    mode: str  # "bwrap" or "off"
    reason: str  # why, for /health and the start banner

    @property
    def active(self) -> bool:
        return self.mode == "bwrap"

    def to_dict(self) -> dict[str, str]:
        return {"mode": self.mode, "reason": self.reason}


PROBE_ARGV = ("--die-with-parent", "--unshare-all", "--share-net", "--ro-bind", "/", "/",
              "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--remount-ro", "/", "--", "/bin/true")


@functools.lru_cache(maxsize=None)
def probe(bwrap: str | None) -> str | None:
    """None when ``bwrap`` can build a sandbox here, else why not. Run once per process."""
    if bwrap is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        done = subprocess.run([bwrap, *PROBE_ARGV], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=PROBE_TIMEOUT_SECS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not be run: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{bwrap} fails here: {detail[-1] if detail else f'exit code {done.returncode}'}"
    return None


def resolve(mode: str, path: str | None = None) -> SandboxStatus:
    """What ``run.sandbox`` amounts to on this machine. ``bwrap`` that cannot work is an error
    (:class:`SandboxUnavailable`): the operator asked for isolation, running without it would be silent."""
    if mode == "off":
        return SandboxStatus("off", "run.sandbox is off")
    bwrap = shutil.which("bwrap", path=path)
    problem = probe(bwrap)
    if problem is None:
        return SandboxStatus("bwrap", f"bubblewrap ({bwrap})")
    if mode == "bwrap":
        raise SandboxUnavailable(f"run.sandbox is bwrap but {problem}")
    return SandboxStatus("off", f"run.sandbox is auto and {problem}")


class SandboxUnavailable(RuntimeError):
    """``run.sandbox: bwrap`` on a machine where bubblewrap cannot run."""


def install_roots(executable: str) -> list[str]:
    """The directories that hold a CLI's install: the common parent of the command on PATH and the
    file it links to (an npm prefix: ``<prefix>/bin/claude`` → ``<prefix>/lib/node_modules/...``), or
    both directories apart when that parent would be a top-level directory or the service user's
    home (or above it). Nothing when it is part of the system (under /usr)."""
    real = os.path.realpath(executable)
    if real.startswith(SYSTEM_PREFIXES):
        return []
    here, there = os.path.dirname(os.path.abspath(executable)), os.path.dirname(real)
    root = os.path.commonpath([here, there])
    home = os.path.realpath(os.path.expanduser("~"))
    if os.path.dirname(root) in ("/", "") or root == "/" or home == root or home.startswith(root + os.sep):
        return [d for d in dict.fromkeys((here, there)) if not d.startswith(SYSTEM_PREFIXES)]
    return [root]


def interpreter_root(executable: str, path: str | None) -> str | None:
    """For a ``#!/usr/bin/env node`` script, the install of that interpreter when it is outside /usr
    (node from nvm, a Python from pyenv): ``<root>/bin/node`` → ``<root>``."""
    try:
        with open(os.path.realpath(executable), "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    name = words[1] if os.path.basename(words[0]) == "env" and len(words) > 1 else words[0]
    found = shutil.which(name, path=path) if not os.path.isabs(name) else name
    if not found:
        return None
    real = os.path.realpath(found)
    if real.startswith(SYSTEM_PREFIXES):
        return None
    return os.path.dirname(os.path.dirname(real))


def bwrap_argv(bwrap: str, invocation: Invocation, *, home: str | None, workdir: str,
               read_only: list[str], read_write: list[str]) -> list[str]:
    """The bwrap command line around ``invocation.argv`` (see the module docstring for what it shows)."""
    argv = [bwrap, "--die-with-parent", "--unshare-all", "--share-net",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = os.path.join("/", link)
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            argv += ["--ro-bind", target, target]
    for name in ETC_ENTRIES:
        path = os.path.join("/etc", name)
        if os.path.lexists(path):
            argv += ["--ro-bind", path, path]
    argv += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    # After /tmp: an install, home or workdir below /tmp must stay visible on top of the private tmpfs.
    for path in dict.fromkeys(read_only):
        argv += ["--ro-bind", path, path]
    for path in dict.fromkeys([p for p in (home, workdir, *read_write) if p]):
        argv += ["--bind", path, path]
    argv += ["--chdir", workdir, "--remount-ro", "/", "--", *invocation.argv]
    return argv


def wrap(invocation: Invocation, *, home: str | None, extra_rw: list[str]) -> Invocation:
    """``invocation`` run inside bubblewrap: its CLI install (and interpreter) read-only, ``home``,
    its workdir and ``extra_rw`` (operator login files a CLI rewrites in place) read-write."""
    path = invocation.env.get("PATH")
    bwrap = shutil.which("bwrap", path=path) or shutil.which("bwrap") or "bwrap"
    executable = invocation.argv[0]
    interpreter = interpreter_root(executable, path)
    read_only = install_roots(executable) + ([interpreter] if interpreter else [])
    workdir = invocation.cwd or os.getcwd()
    argv = bwrap_argv(bwrap, invocation, home=home, workdir=workdir, read_only=read_only, read_write=extra_rw)
    return dataclasses.replace(invocation, argv=argv, cwd=workdir)
