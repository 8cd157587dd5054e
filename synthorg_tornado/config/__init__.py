"""Configuration: load and validate `config.yaml` into one immutable, typed `Config`.

Every problem found is collected, so a sysadmin sees all of them at once: `ConfigError.problems`
holds one self-contained line each, and the command line prints them and exits 2.

The package decides what a key means (`schema`), where a value comes from (`sources`: the file,
then `SYNTHORG_*` variables), which combinations are refused or warned about (`rules`) and how
they are put together (`loading`). Code outside it imports from here only.
"""

from synthorg_tornado.config.loading import describe, ensure_secret, load_config, resolve_config_path
from synthorg_tornado.config.rules import build_ssl_context
from synthorg_tornado.config.schema import (
    AuditConfig,
    AuthConfig,
    Config,
    ConfigError,
    DatabaseConfig,
    LoggingConfig,
    MetricsConfig,
    RealtimeConfig,
    ServerConfig,
    SettingsConfig,
    WebSocketConfig,
)
from synthorg_tornado.config.sources import CONFIG_ENV, ENV_PREFIX, SETTING_ENV_PREFIX
from synthorg_tornado.config.urls import parse_url

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "SETTING_ENV_PREFIX",
    "AuditConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "LoggingConfig",
    "MetricsConfig",
    "RealtimeConfig",
    "ServerConfig",
    "SettingsConfig",
    "WebSocketConfig",
    "build_ssl_context",
    "describe",
    "ensure_secret",
    "load_config",
    "parse_url",
    "resolve_config_path",
]
