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
    return for_caller(current_app.extensions["clinvk.service"])


def for_caller(base: Service) -> Service:
    """``base`` acting for the tenant of this request's API key."""
    tenant = g.get("tenant")
    return base if tenant is None or tenant == base.tenant else base.for_tenant(tenant)


def settings() -> ServerConfig:
    """The ``server`` section of the config."""
    return current_app.config["CLINVK"].server


LOCAL_TENANT = "local"


def tenant() -> str:
    """The caller's tenant: what owns the jobs and stored responses a request creates, and the only
    ones it can see (``local`` without API keys)."""
    caller = g.get("tenant")
    return LOCAL_TENANT if caller is None else caller.name


def jobs():
    """The job runner of this process (:class:`clinvk.jobs.runner.JobRunner`)."""
    return current_app.extensions["clinvk.jobs"]
