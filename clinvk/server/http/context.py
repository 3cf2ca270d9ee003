"""What views reach through the current app: the service (acting for the request's tenant) and the
server settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, g

if TYPE_CHECKING:
    from ...config import ServerConfig
    from ...service import Service


def service() -> Service:
    """The service acting for the tenant of this request's API key (the server's own, for open paths)."""
    base = current_app.extensions["clinvk.service"]
    tenant = g.get("tenant")
    return base if tenant is None else base.for_tenant(tenant)


def settings() -> ServerConfig:
    """The ``server`` section of the config."""
    return current_app.config["CLINVK"].server
