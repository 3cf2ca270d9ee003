"""Warm CLI processes: started ahead in each backend's long-lived mode, one run each.

``pool.py`` (the pool, its bounds and metrics events), ``process.py`` (one warm process serving one
run), ``recipes.py`` (which launches can be served warm, the pool key), and one module per backend
protocol: ``claude.py`` (stream-json input), ``codex.py`` (app-server). gemini is not pooled: its
long-lived mode (``--acp``) sends a different request (interactive system prompt, more tools) and
runs prompts starting with ``/`` or ``$`` as commands, so its replies and usage would not be the
one-shot ones.
"""

from .pool import DISCARD, HIT, MISS, WarmPool
from .process import WarmProcess
from .recipes import POOLABLE, Recipe, recipe_for

__all__ = ["DISCARD", "HIT", "MISS", "POOLABLE", "Recipe", "WarmPool", "WarmProcess", "recipe_for"]
