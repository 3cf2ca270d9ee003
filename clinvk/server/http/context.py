"""What views reach through the current app: the service and the server settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from ...config import ServerConfig
    from ...service import Service


def service() -> Service:
    return current_app.extensions["clinvk.service"]


def settings() -> ServerConfig:
    """The ``server`` section of the config."""
    return current_app.config["CLINVK"].server
