"""Helpers for tests that run the genuine ``claude``, ``codex`` and ``gemini`` CLIs offline.

The CLIs come from ``scripts/install-clis.sh`` (pinned versions, installed under
``$CLINVK_CLI_PREFIX`` or ``~/.cache/clinvk-clis``).  Each test points its CLI at a loopback stub
from ``tests/stubs`` with :func:`offline_env`, which also writes the config files the CLI needs
under a throwaway home directory.  Nothing here ever targets anything but 127.0.0.1/::1.

Typical use::

    stub = anthropic_stub.start_stub(mode="echo")
    env = cli_env("claude", stub.url, tmp_path / "home")
    subprocess.run([find_cli("claude"), "-p", "--output-format", "json"], stdin=prompt_file,
                   env=env, cwd=workdir, capture_output=True, timeout=60)

:func:`offline_env` returns only the *extra* variables.  The caller must also drop variables that
change the CLIs' behaviour from the inherited environment: ``RUST_BACKTRACE`` (codex prints a
backtrace block on stderr for fatal errors) and any real vendor credentials or endpoints
(``ANTHROPIC_*``, ``OPENAI_*``, ``GEMINI_*``, ``GOOGLE_*``, ``CODEX_*``, ``CLAUDE_*``).
:func:`base_env` does exactly that; :func:`cli_env` combines both.
"""

import json
import os
import shutil
from pathlib import Path

BACKENDS = ("claude", "codex", "gemini")
PINNED_VERSIONS = {"claude": "2.1.330", "codex": "0.169.0", "gemini": "0.61.0"}
INSTALL_HINT = "run scripts/install-clis.sh to install the pinned CLIs"

# Models that keep each CLI quiet: a claude alias (an unknown name logs
# "[claude-code:unrecognized_model]" on stderr), a codex catalogue slug (else an extra
# "Model metadata ... not found" error item), an explicit gemini model (skips the router request).
E2E_MODELS = {"claude": "sonnet", "codex": "gpt-5.5", "gemini": "gemini-2.5-flash"}

# Name of the env var codex reads the stub's API key from (config ``env_key``).
CODEX_KEY_VAR = "CODEX_STUB_API_KEY"  # codex's own prefix: passes clinvk's CLI env allowlist
DUMMY_KEY = "sk-clinvk-stub"

# Inherited variables that alter the CLIs' behaviour or leak real credentials.
_DROP_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_", "GEMINI_", "GOOGLE_")
_DROP_NAMES = ("RUST_BACKTRACE", "RUST_LOG", "API_TIMEOUT_MS", "DISABLE_TELEMETRY", "IS_SANDBOX",
               "CI", "GITHUB_ACTIONS")


def cli_prefix():
    """The install prefix used by ``scripts/install-clis.sh``."""
    return Path(os.environ.get("CLINVK_CLI_PREFIX") or Path.home() / ".cache" / "clinvk-clis")


def find_cli(name):
    """Path of the ``name`` CLI: the install prefix first, then ``PATH``; None if absent."""
    prefix = cli_prefix()
    for path in (prefix / "bin" / name, prefix / name / "node_modules" / ".bin" / name):
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def base_env():
    """A copy of ``os.environ`` without the variables listed in the module docstring."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(_DROP_PREFIXES) and k not in _DROP_NAMES}


def cli_env(backend, stub_url, home_dir, **kwargs):
    """:func:`base_env` updated with :func:`offline_env`: a complete env for one CLI run."""
    env = base_env()
    env.update(offline_env(backend, stub_url, home_dir, **kwargs))
    return env


def offline_env(backend, stub_url, home_dir, timeout_s=20):
    """Extra env vars (and config files under ``home_dir``) to run ``backend`` against a stub.

    ``stub_url`` is the stub's base URL (``http://127.0.0.1:PORT``); ``home_dir`` is created and
    becomes ``HOME``, with ``TMPDIR`` at ``home_dir/tmp``.  ``timeout_s`` bounds a silent stub
    (claude ``API_TIMEOUT_MS``, codex ``stream_idle_timeout_ms``; gemini has no such knob, so
    always put a subprocess timeout on the run as well).  Retries are disabled everywhere so an
    error mode fails in well under a second.
    """
    home = Path(home_dir)
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "TMPDIR": str(tmp), "NO_COLOR": "1"}
    if backend == "claude":
        env.update({
            "ANTHROPIC_BASE_URL": stub_url,
            "ANTHROPIC_API_KEY": DUMMY_KEY,
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "CLAUDE_CODE_TMPDIR": str(tmp),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # else DNS for api.anthropic.com
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "API_TIMEOUT_MS": str(int(timeout_s * 1000)),
        })
    elif backend == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(_codex_config(stub_url, timeout_s))
        env.update({"CODEX_HOME": str(codex_home), CODEX_KEY_VAR: DUMMY_KEY})
    elif backend == "gemini":
        gemini_dir = home / ".gemini"
        gemini_dir.mkdir(parents=True, exist_ok=True)
        (gemini_dir / "settings.json").write_text(json.dumps(GEMINI_SETTINGS, indent=2))
        env.update({
            "GEMINI_API_KEY": DUMMY_KEY,
            "GOOGLE_GEMINI_BASE_URL": stub_url,
            "GEMINI_CLI_HOME": str(home),          # the CLI uses $GEMINI_CLI_HOME/.gemini
            "GEMINI_CLI_TRUST_WORKSPACE": "true",  # else exit 55 (untrusted folder)
            "GEMINI_CLI_NO_RELAUNCH": "true",      # one process: SIGTERM works, 0.45 s faster
            "GEMINI_TELEMETRY_ENABLED": "false",
            "COLORTERM": "truecolor",              # drops the "256-color support" stderr warning
        })
    else:
        raise ValueError("unknown backend %r" % backend)
    return env


# $GEMINI_CLI_HOME/.gemini/settings.json.  selectedType is required (GOOGLE_GEMINI_BASE_URL alone
# gives the unsupported "gateway" auth type, exit 41); usage statistics would POST to
# play.googleapis.com; maxAttempts 1 makes API errors fail fast (with an explicit -m model);
# useRipgrep false drops the "Ripgrep is not available" stderr line (rg is not needed).
GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False,
                "maxAttempts": 1},
    "tools": {"useRipgrep": False},
}


def _codex_config(stub_url, timeout_s):
    """``$CODEX_HOME/config.toml``: a Responses provider at the stub, fail-fast, no egress."""
    return f"""\
model = "{E2E_MODELS['codex']}"
model_provider = "clinvk_stub"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[analytics]
enabled = false                        # else OTLP metrics to ab.chatgpt.com

[features]
plugins = false                        # else git ls-remote github.com / api.github.com
unbounded_connection_retries = false   # else a refused connection is retried forever

[model_providers.clinvk_stub]
name = "clinvk loopback stub"
base_url = "{stub_url.rstrip('/')}/v1"
env_key = "{CODEX_KEY_VAR}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {int(timeout_s * 1000)}
"""


def clear_gemini_lock(home_dir):
    """Remove gemini's stale ``projects.json.lock`` (a left-over lock stalls the next run ~12 s)."""
    shutil.rmtree(Path(home_dir) / ".gemini" / "projects.json.lock", ignore_errors=True)
