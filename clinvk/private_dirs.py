"""Directories only the service user may enter: clinvk's state holds users' prompts and run state."""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dirs(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and each missing parent with mode 0700 (not filtered by the umask).

    Every component created here is private, so the state directory is 0700 whichever part of
    clinvk (gate, session store, config file, scratch workdirs) happens to create it first.
    Directories that already exist are left as they are.
    """
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # another worker made it meanwhile: whoever made it chose 0700 too
            continue
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    return path
