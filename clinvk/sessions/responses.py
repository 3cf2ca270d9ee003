"""Stored OpenAI Responses (``/openai/v1/responses`` with ``store``): each is one turn of a clinvk session.

A stored response keeps its answer (the body ``GET /openai/v1/responses/{id}`` returns) and the session
whose CLI conversation ``previous_response_id`` continues. Lookups take the ``owner`` (the caller's
tenant): another owner's response does not exist for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class ResponseNotFound(LookupError):
    """No response of this owner has this id."""


@dataclass
class StoredResponse:
    id: str
    owner: str
    session_id: str
    backend: str
    body: dict[str, Any]


class ResponseStore(ABC):
    @abstractmethod
    def save_response(self, response: StoredResponse) -> None:
        """Store (or replace) a response."""

    @abstractmethod
    def get_response(self, response_id: str, owner: str) -> StoredResponse:
        """Raises :class:`ResponseNotFound`."""

    @abstractmethod
    def delete_response(self, response_id: str, owner: str) -> None:
        """Raises :class:`ResponseNotFound`. The session (and the CLI's transcript) stays."""
