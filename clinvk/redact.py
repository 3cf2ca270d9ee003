"""Hiding secrets in what clinvk prints or logs: passwords in URIs, values of secret-looking variables."""

from __future__ import annotations

import re

_URI_PASSWORD = re.compile(r"(://[^/@]*?:)[^/@]+@")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.I)


def redact_uri(uri: str) -> str:
    """``redis://user:pw@host`` → ``redis://user:***@host``."""
    return _URI_PASSWORD.sub(r"\1***@", uri)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name suggests its value is a credential."""
    return bool(_SECRET_NAME.search(name))
