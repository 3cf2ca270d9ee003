"""The ``clinvk`` command line (click). It uses the same service layer as the HTTP server and imports
nothing from :mod:`clinvk.server`.

One module per job: :mod:`.app` (the group, ``main``), :mod:`.context` (the typed context object,
exit codes, config/service/store of a run), :mod:`.params` (option types), :mod:`.prompt`,
:mod:`.sessions`, :mod:`.settings` (``config``), :mod:`.batch` (parallel/chain/compare),
:mod:`.server` (``version``, ``serve``), :mod:`.output` (tables, progress), :mod:`.jobs` (``jobs``,
against a server through :mod:`.remote`, shown by :mod:`.job_progress`).
"""

from . import batch, jobs, keys, prompt, server, sessions, settings  # noqa: F401  (each registers its commands)
from .app import cli, main

__all__ = ["cli", "main"]
