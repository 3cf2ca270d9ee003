"""Start-up checks of how exposed a server is: a public bind without API keys, a Host list of ``*``."""

from __future__ import annotations

import ipaddress

from .config import Config, ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(config: Config) -> list[str]:
    """``server.allowed_hosts``, or the default for a loopback bind; a public bind must list them."""
    server = config.server
    hosts = [h.strip().lower() for h in server.allowed_hosts if h.strip()]
    if hosts:
        return hosts
    if is_loopback(server.host):
        return sorted({*LOOPBACK_NAMES, server.host.strip("[]").lower()})
    raise ConfigError(f"server.allowed_hosts: required when the server listens on {server.host} (not loopback): "
                      "list the host names clients use to reach it, or ['*'] to answer any Host "
                      "(then a DNS-rebinding page can reach it)", key="server.allowed_hosts")


def startup_warnings(config: Config) -> list[str]:
    """What an operator must read before the server answers; raises ConfigError for a public bind
    without ``server.allowed_hosts``."""
    server = config.server
    allowed_hosts(config)
    warnings = []
    if not is_loopback(server.host) and not server.api_keys and not server.api_keys_gopass_path:
        warnings.append(f"listening on {server.host}, which is not loopback, with no API keys: anyone who can "
                        "reach this port can run the coding agents (edit files, run commands) as this user; "
                        "set CLINVK_API_KEYS or server.api_keys_gopass_path")
    return warnings
