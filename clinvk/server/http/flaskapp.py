"""The Flask application class of the server."""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask

MAX_REMEMBERED = 4096


class App(Flask):
    """Flask, deciding once per function whether it is a coroutine: Flask's ``ensure_sync`` asks
    ``inspect`` again on every call of every hook, view and error handler."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            pass
        except TypeError:  # not hashable: nothing to remember it by
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if len(self._sync) < MAX_REMEMBERED:
            self._sync[func] = sync
        return sync
