"""clinvk configuration: the model (:mod:`.model`), the coercion engine that checks every key
(:mod:`.coercion`), the ``CLINVK_*`` environment layer (:mod:`.env`) and the YAML file (:mod:`.yaml_io`).

Layers, lowest to highest precedence::

    built-in defaults  <  YAML file  <  CLINVK_* environment  <  overrides (CLI flags, tests)

Every error names the key path (``server.port: ...``) and where the bad value came from.
``example.yaml`` in this package is the documented example config; a test loads it against the model.
"""

from __future__ import annotations

from pathlib import Path

from .model import (APPROVAL_MODES, BACKEND_NAMES, DEFAULT_BLOCKED_WORKDIR_PREFIXES, OUTPUT_FORMATS, SANDBOX_MODES,
                    TENANT_NAME_PATTERN, BackendConfig, Config, ConfigError, JobsConfig, OutputConfig, ParallelConfig,
                    RunConfig, ServerConfig, SessionConfig, TenantConfig, UnifiedFlags)
from .yaml_io import default_config_path, load_config, set_config_value, unset_config_value

EXAMPLE_CONFIG = Path(__file__).with_name("example.yaml")

__all__ = [
    "APPROVAL_MODES", "BACKEND_NAMES", "DEFAULT_BLOCKED_WORKDIR_PREFIXES", "EXAMPLE_CONFIG", "OUTPUT_FORMATS",
    "SANDBOX_MODES", "TENANT_NAME_PATTERN", "BackendConfig", "Config", "ConfigError", "JobsConfig", "OutputConfig",
    "ParallelConfig", "RunConfig", "ServerConfig", "SessionConfig", "TenantConfig", "UnifiedFlags",
    "default_config_path", "load_config", "set_config_value", "unset_config_value",
]
