"""The environment a backend CLI runs with: an allowlist of the server's variables, never all of them.

A CLI is an agent that can print its environment, so it gets only what a CLI needs to run:

- :data:`COMMON_NAMES` / :data:`COMMON_PREFIXES`: the system basics (PATH, HOME, locale, TZ, TMPDIR,
  proxies, CA bundles, XDG directories);
- :data:`BACKEND_PREFIXES` / :data:`BACKEND_NAMES_ALLOWED`: each backend's own auth, base-URL and
  settings variables (``ANTHROPIC_*`` and ``CLAUDE_*`` for claude, ``OPENAI_*`` and ``CODEX_*`` for
  codex, ``GEMINI_*`` and ``GOOGLE_*`` for gemini, …), which also cover the per-session home variables
  ``CLAUDE_CONFIG_DIR``, ``CODEX_HOME`` and ``GEMINI_CLI_HOME``;
- the operator's ``backends.<name>.pass_env`` (more names, ``PREFIX*`` patterns allowed);
- then the backend's defaults and the operator's ``backends.<name>.env`` on top.

Nothing named ``CLINVK_*`` ever passes (the API keys live there), whatever the configuration says.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from .backends import BACKENDS
from .config import BackendConfig

COMMON_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "NO_COLOR", "COLORTERM",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "NODE_USE_SYSTEM_CA",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
})
COMMON_PREFIXES = ("LC_",)

# Each backend's own variables (see the CLI reference notes): auth, base URL, model, settings and
# config homes. Vendor credentials of one CLI are not handed to the others.
BACKEND_PREFIXES: dict[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_", "CLAUDE_", "AWS_", "VERTEX_REGION_"),
    "codex": ("OPENAI_", "CODEX_", "AZURE_OPENAI_"),
    "gemini": ("GEMINI_", "GOOGLE_"),
}
BACKEND_NAMES_ALLOWED: dict[str, frozenset[str]] = {
    # claude's documented settings without a vendor prefix; IS_SANDBOX lets it bypass permissions as root.
    "claude": frozenset({"API_TIMEOUT_MS", "DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER", "DISABLE_ERROR_REPORTING",
                         "DISABLE_NON_ESSENTIAL_MODEL_CALLS", "DISABLE_COST_WARNINGS", "MAX_THINKING_TOKENS",
                         "MAX_MCP_OUTPUT_TOKENS", "MCP_TIMEOUT", "MCP_TOOL_TIMEOUT", "BASH_DEFAULT_TIMEOUT_MS",
                         "BASH_MAX_TIMEOUT_MS", "BASH_MAX_OUTPUT_LENGTH", "CLOUD_ML_REGION", "IS_SANDBOX"}),
    "codex": frozenset(),
    "gemini": frozenset(),
}

FORBIDDEN_PREFIX = "CLINVK_"


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """``NAME`` matches exactly, ``PREFIX*`` matches by prefix."""
    for pattern in patterns:
        if pattern.endswith("*") and name.startswith(pattern[:-1]):
            return True
        if name == pattern:
            return True
    return False


def is_allowed(backend: str, name: str, pass_env: Iterable[str] = ()) -> bool:
    """Whether the server's variable ``name`` may reach ``backend``'s CLI."""
    if name.startswith(FORBIDDEN_PREFIX):
        return False
    return (name in COMMON_NAMES or name.startswith(COMMON_PREFIXES)
            or name.startswith(BACKEND_PREFIXES.get(backend, ())) or name in BACKEND_NAMES_ALLOWED.get(backend, ())
            or _matches(name, pass_env))


def cli_environment(backend: str, config: BackendConfig, server_env: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of one ``backend`` CLI process (see the module docstring for the layers)."""
    env = {name: value for name, value in server_env.items() if is_allowed(backend, name, config.pass_env)}
    for name, value in BACKENDS[backend].default_env.items():
        env.setdefault(name, value)
    env.update(config.env)
    return {name: value for name, value in env.items() if not name.startswith(FORBIDDEN_PREFIX)}


class CliEnvironments:
    """:func:`cli_environment` of each backend, computed again only when the server's environment or
    the backend's settings changed: comparing ``os.environ`` with the copy an answer was computed
    from costs a fraction of checking every variable against the allowlist on every run."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, dict, dict[str, str]]] = {}

    def get(self, backend: str, config: BackendConfig, server_env: Mapping[str, str]) -> dict[str, str]:
        """A new dict (callers may change it)."""
        data = getattr(server_env, "_data", None)  # os.environ's own dict: compared without decoding it
        if not isinstance(data, dict):
            return cli_environment(backend, config, server_env)
        settings = (id(config), tuple(config.pass_env), tuple(config.env.items()))
        cached = self._cache.get(backend)
        if cached is not None and cached[0] == settings and cached[1] == data:
            return dict(cached[2])
        env = cli_environment(backend, config, server_env)
        self._cache[backend] = (settings, dict(data), env)
        return dict(env)
