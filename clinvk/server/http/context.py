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


LOCAL_TENANT = "local"


def tenant() -> str:
    """The caller's tenant: what owns the jobs and stored responses a request creates, and the only
    ones it can see. One tenant, ``local``, until tenants are configured."""
    return LOCAL_TENANT


def jobs():
    """The job runner of this process (:class:`clinvk.jobs.runner.JobRunner`)."""
    return current_app.extensions["clinvk.jobs"]
