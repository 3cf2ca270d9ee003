"""The config model: sections as dataclasses, their defaults, and the names every layer shares."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..redact import is_secret_name, redact_uri


class ConfigError(Exception):
    """A configuration problem. ``str(e)`` always starts with the key path or the file it concerns."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


BACKEND_NAMES = ("claude", "codex", "gemini")
APPROVAL_MODES = ("default", "auto", "none", "always")
SANDBOX_MODES = ("default", "read-only", "workspace", "full")
OUTPUT_FORMATS = ("default", "text", "json", "stream-json")
# Used when server.blocked_workdir_prefixes is empty; a non-empty list replaces them (an operator who
# lists prefixes means exactly those). "~/" is the service user's home; a trailing * matches by name.
# clinvk's own state directory is blocked whatever the list says (Service).
DEFAULT_BLOCKED_WORKDIR_PREFIXES = (
    "/etc", "/var/run", "/var/lock", "/var/lib", "/root", "/sys", "/proc", "/dev", "/usr/bin", "/usr/sbin",
    "/bin", "/sbin", "/boot", "/lib", "/lib64", "/usr/lib", "/usr/lib64",
    "~/.ssh", "~/.config", "~/.claude*", "~/.codex", "~/.gemini", "~/.gnupg",
)


@dataclass
class BackendConfig:
    name: str
    command: str = ""  # executable name or path; "" -> the backend name, resolved on PATH
    model: str = ""
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the CLI process
    # More server variables the CLI may inherit (names or PREFIX*), on top of clinvk.cli_env's allowlist.
    pass_env: list[str] = field(default_factory=list)
    enabled: bool = True
    extra_flags: list[str] = field(default_factory=list)  # operator's flags: trusted, not allowlisted
    approval_mode: str = ""  # "" = use unified_flags
    sandbox_mode: str = ""
    system_prompt: str = ""
    allowed_tools: str = ""
    allow_dangerous_flags: bool = False  # lets requests use approval_mode none / sandbox_mode full


@dataclass
class UnifiedFlags:
    approval_mode: str = "default"
    sandbox_mode: str = "default"
    verbose: bool = False
    dry_run: bool = False
    max_turns: int = 0
    command_timeout_secs: int = 0  # 0 = no timeout (CLI prompt/resume)


@dataclass
class SessionConfig:
    auto_resume: bool = False
    retention_days: int = 30  # 0 = keep forever
    default_tags: list[str] = field(default_factory=list)
    store_token_usage: bool = True
    store: str = ""  # "" = SQLite at <home>/sessions.db; a SQLite file path; or postgresql://… (several hosts)
    store_pool_size: int = 4  # PostgreSQL connections per worker process
    turn_lease_secs: float = 30.0  # a running turn renews its lease every third of this; a dead host's expires after it


@dataclass
class OutputConfig:
    format: str = "json"
    show_tokens: bool = False
    show_timing: bool = False


@dataclass
class ParallelConfig:
    max_workers: int = 3
    fail_fast: bool = False
    max_tasks: int = 32


@dataclass
class JobsConfig:
    """Detached runs (``/api/v1/jobs``)."""

    timeout_secs: int = 14400  # a job's CLI run may take this long (request_timeout_secs is for requests)
    max_active_per_tenant: int = 8  # queued + running jobs of one tenant; more is a 429
    heartbeat_secs: float = 10.0  # how often a running job says it is alive; 3 missed = interrupted


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 64
    request_timeout_secs: int = 300
    read_timeout_secs: int = 30
    write_timeout_secs: int = 300
    idle_timeout_secs: int = 120
    keepalive_interval_secs: float = 15.0  # NDJSON/SSE keep-alive while the CLI is silent
    # Never read from the file (secrets don't belong in a world-readable YAML): CLINVK_API_KEYS or code.
    api_keys: list[str] = field(default_factory=list, repr=False)
    api_keys_gopass_path: str = ""
    rate_limit_enabled: bool = False
    rate_limit_rps: int = 10
    rate_limit_burst: int = 20
    rate_limit_storage_uri: str = "memory://"
    trusted_proxies: list[str] = field(default_factory=list)  # IPs or CIDRs
    max_request_body_bytes: int = 10485760  # 0 = no limit
    cors_allowed_origins: list[str] = field(
        default_factory=lambda: ["http://localhost:*", "http://127.0.0.1:*"])
    cors_allow_credentials: bool = False
    # Host names the server answers to ([] = the loopback names and the bind address, loopback binds only).
    allowed_hosts: list[str] = field(default_factory=list)
    cors_max_age: int = 300
    allowed_workdir_prefixes: list[str] = field(default_factory=list)
    blocked_workdir_prefixes: list[str] = field(
        default_factory=lambda: list(DEFAULT_BLOCKED_WORKDIR_PREFIXES))
    metrics_enabled: bool = False
    max_concurrent_runs: int = 16
    max_queued_runs: int = 64
    queue_timeout_secs: float = 30.0
    shutdown_grace_secs: int = 10  # on SIGTERM, runs may finish this long before their CLIs are ended
    # With limits in Redis: a host renews its tenants' run slots every third of this; a dead host's expire after it.
    quota_lease_secs: float = 30.0


@dataclass
class WarmPoolConfig:
    """CLIs started ahead for runs that recur (``run.warm_pool``); per server worker process."""
    enabled: bool = True
    backends: list[str] = field(default_factory=lambda: ["claude", "codex"])
    size: int = 1  # processes waiting per launch key
    max_processes: int = 4  # waiting processes in all
    max_memory_mb: int = 1024  # resident memory of the waiting processes in all
    idle_expiry_secs: float = 600.0  # a key not asked for this long loses its processes


# A tenant's name: lowercase, so it reads the same in the YAML file and in CLINVK_TENANTS__NAME__KEY.
TENANT_NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"


@dataclass
class TenantConfig:
    """One API key's owner (see clinvk.tenants). The key is only ever stored as its SHA-256 digest."""
    name: str
    key_sha256: str = ""  # "" = the key comes from CLINVK_API_KEYS / gopass as `name:key`
    admin: bool = False  # sees and manages every tenant's sessions
    allowed_workdir_prefixes: list[str] = field(default_factory=list)  # narrows server.allowed_workdir_prefixes
    max_concurrent_runs: int = 0  # 0 = half the server's slots when there are several tenants
    rate_limit_rps: int = 0  # 0 = server.rate_limit_rps (when server.rate_limit_enabled)
    rate_limit_burst: int = 0  # 0 = server.rate_limit_burst


SANDBOX_CHOICES = ("auto", "bwrap", "off")


@dataclass
class RunConfig:
    """How each CLI process is started: isolated (clinvk.sandbox, clinvk.homes), or taken warm (clinvk.warm)."""
    sandbox: str = "auto"  # auto = bubblewrap when a start-up probe shows it works, else off with a warning
    warm_pool: WarmPoolConfig = field(default_factory=WarmPoolConfig)


def default_home(env: Mapping[str, str]) -> Path:
    home = env.get("CLINVK_HOME")
    return Path(home).expanduser() if home else Path.home() / ".clinvk"


@dataclass
class Config:
    home: Path = field(default_factory=lambda: default_home(os.environ))
    config_path: Path | None = None  # the file actually loaded
    default_backend: str = "claude"
    unified_flags: UnifiedFlags = field(default_factory=UnifiedFlags)
    backends: dict[str, BackendConfig] = field(default_factory=dict)
    session: SessionConfig = field(default_factory=SessionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    run: RunConfig = field(default_factory=RunConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)

    def __post_init__(self) -> None:
        # Callers can rely on all three backends being present.
        for name in BACKEND_NAMES:
            self.backends.setdefault(name, BackendConfig(name=name))

    def backend(self, name: str) -> BackendConfig:
        try:
            return self.backends[name]
        except KeyError:
            raise ConfigError(f"backends.{name}: unknown backend; expected one of "
                              f"{', '.join(BACKEND_NAMES)}", key=f"backends.{name}") from None

    @property
    def sessions_db(self) -> Path:
        return self.home / "sessions.db"

    @property
    def session_store(self) -> str | Path:
        """Where sessions are stored: ``session.store`` when set, else the SQLite file in the home."""
        return self.session.store or self.sessions_db

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """Plain data for ``clinvk config show`` (home/config_path are left to the caller)."""
        d: dict[str, Any] = {"default_backend": self.default_backend,
                             "unified_flags": dataclasses.asdict(self.unified_flags), "backends": {}}
        for name, b in self.backends.items():
            d["backends"][name] = {k: v for k, v in dataclasses.asdict(b).items() if k != "name"}
        for section in ("session", "output", "parallel", "server", "run", "jobs"):
            d[section] = dataclasses.asdict(getattr(self, section))
        d["tenants"] = {name: {k: v for k, v in dataclasses.asdict(t).items() if k != "name"}
                        for name, t in self.tenants.items()}
        if redact:
            d["server"]["api_keys"] = ["***" for _ in self.server.api_keys]
            d["server"]["rate_limit_storage_uri"] = redact_uri(self.server.rate_limit_storage_uri)
            d["session"]["store"] = redact_uri(self.session.store)
            for b in d["backends"].values():  # e.g. backends.claude.env.ANTHROPIC_API_KEY
                b["env"] = {k: ("***" if is_secret_name(k) else v) for k, v in b["env"].items()}
        return d
