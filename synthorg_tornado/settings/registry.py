"""The typed setting definitions: what exists, its type and bounds, who may write it.

A setting's value comes from the first of: the database (written through the API), the
environment (`SYNTHORG_SETTING_<NAMESPACE>_<KEY>`), the config file (the mirrored config key, or
`settings.values`), and the code default. Each definition validates its own values, so a bad value
is refused before anything is written.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synthorg_tornado import strict_json
from synthorg_tornado.accounts import roles
from synthorg_tornado.config import SETTING_ENV_PREFIX, Config
from synthorg_tornado.errors import InvalidValue, LabError

STRING, INT, FLOAT, BOOL, JSON, ENUM = "string", "int", "float", "bool", "json", "enum"
MASK = "********"
MAX_JSON_BYTES = 16 * 1024
EDITORS = frozenset({roles.ADMIN, roles.MANAGER})
READ_ONLY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SettingDefinition:
    namespace: str
    key: str
    type: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    sensitive: bool = False
    restart_required: bool = False
    write_roles: frozenset[str] = EDITORS
    # The config.yaml key this setting mirrors; its value is the setting's `config` source.
    config_key: str | None = None

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.key}"

    @property
    def env_name(self) -> str:
        return f"{SETTING_ENV_PREFIX}{self.namespace.upper()}_{self.key.upper()}"

    @property
    def read_only(self) -> bool:
        return not self.write_roles

    def constraints(self) -> dict[str, Any]:
        """The bounds `validate` applies, for editors that check before sending."""
        found = {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "max_length": self.max_length,
            "choices": list(self.choices) or None,
        }
        return {name: value for name, value in found.items() if value is not None}

    def validate(self, value: Any) -> Any:
        """The value, checked against type and bounds; InvalidValue names the reason."""
        if self.type == STRING:
            if not isinstance(value, str):
                raise InvalidValue(f"{self.name} must be a string.")
            # Every page renders ui.* values: one that cannot be encoded would break them all.
            _storable(self.name, value)
            if self.max_length is not None and len(value) > self.max_length:
                raise InvalidValue(f"{self.name} must be at most {self.max_length} characters.")
            return value
        if self.type == INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidValue(f"{self.name} must be a whole number (a JSON integer).")
            return self._bounded(value)
        if self.type == FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidValue(f"{self.name} must be a finite number.")
            try:
                number = float(value)  # an integer beyond 1.8e308 raises OverflowError here
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise InvalidValue(f"{self.name} must be a finite number.")
            return self._bounded(number)
        if self.type == BOOL:
            if not isinstance(value, bool):
                raise InvalidValue(f"{self.name} must be true or false.")
            return value
        if self.type == ENUM:
            if value not in self.choices:
                raise InvalidValue(f"{self.name} must be one of: {', '.join(self.choices)}.")
            return value
        if self.type == JSON:
            if len(json.dumps(value)) > MAX_JSON_BYTES:
                raise InvalidValue(f"{self.name} must be at most {MAX_JSON_BYTES} bytes of JSON.")
            return value
        raise InvalidValue(f"{self.name} has an unknown type.")

    def _bounded(self, value: float) -> Any:
        if self.minimum is not None and value < self.minimum:
            raise InvalidValue(f"{self.name} must be at least {_number(self.minimum)}.")
        if self.maximum is not None and value > self.maximum:
            raise InvalidValue(f"{self.name} must be at most {_number(self.maximum)}.")
        return value

    def parse_text(self, text: str) -> Any:
        """An environment variable's text, read as this setting's type."""
        if self.type in (STRING, ENUM):
            return self.validate(text)
        try:
            value = strict_json.loads(text)
        except LabError:
            raise InvalidValue(f"{self.name}: {text!r} is not a valid {self.type}.") from None
        return self.validate(value)

    def shown(self, value: Any) -> Any:
        return MASK if self.sensitive and value not in (None, "") else value


def _storable(name: str, value: str) -> None:
    try:
        strict_json.check_text(value, name)
    except LabError as error:
        raise InvalidValue(error.detail) from None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _server_view(key: str, type_: str, description: str) -> SettingDefinition:
    return SettingDefinition(
        "server",
        key,
        type_,
        None,
        description,
        restart_required=True,
        write_roles=READ_ONLY,
        config_key=f"server.{key}",
    )


DEFINITIONS: tuple[SettingDefinition, ...] = (
    SettingDefinition(
        "ui", "lab_name", STRING, "Synthorg Lab", "Name shown in the page header.", max_length=100
    ),
    SettingDefinition(
        "ui", "banner", STRING, "", "Message of the day, shown live on every page.", max_length=1000
    ),
    SettingDefinition(
        "auth",
        "session_ttl_minutes",
        INT,
        1440,
        "Absolute lifetime of new sessions.",
        minimum=1,
        maximum=525600,
        config_key="auth.session_ttl_minutes",
    ),
    SettingDefinition(
        "auth",
        "max_sessions_per_user",
        INT,
        10,
        "Live sessions per user; the oldest is revoked past it.",
        minimum=1,
        maximum=1000,
        config_key="auth.max_sessions_per_user",
    ),
    SettingDefinition(
        "auth",
        "login_rate_limit_per_minute",
        INT,
        10,
        "Failed logins per client IP per minute.",
        minimum=1,
        maximum=100000,
        config_key="auth.login_rate_limit_per_minute",
    ),
    SettingDefinition(
        "websocket",
        "max_subscriptions",
        INT,
        64,
        "Channels one WebSocket may subscribe to.",
        minimum=1,
        maximum=4096,
        config_key="websocket.max_subscriptions",
    ),
    SettingDefinition("budget", "monthly_limit", FLOAT, 0.0, "Monthly spending limit of the lab.", minimum=0),
    SettingDefinition(
        "notifications",
        "webhook_secret",
        STRING,
        "",
        "Secret sent with outgoing webhooks.",
        max_length=512,
        sensitive=True,
        write_roles=frozenset({roles.ADMIN}),
    ),
    _server_view("host", STRING, "Address the server binds (config.yaml)."),
    _server_view("port", INT, "TCP port the server binds (config.yaml)."),
    _server_view("base_url", STRING, "Path prefix of the server (config.yaml)."),
    _server_view("processes", INT, "Worker processes (config.yaml)."),
    _server_view("trusted_proxies", JSON, "Proxies whose forwarded headers are honoured (config.yaml)."),
)


class SettingsRegistry:
    def __init__(self, definitions: tuple[SettingDefinition, ...] = DEFINITIONS) -> None:
        self._by_name = {definition.name: definition for definition in definitions}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def get(self, namespace: str, key: str) -> SettingDefinition | None:
        return self._by_name.get(f"{namespace}.{key}")

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._by_name), n=1, cutoff=0.6)
        return f"; did you mean '{close[0]}'?" if close else ""

    def lower_sources(
        self, config: Config, environ: Mapping[str, str]
    ) -> tuple[dict[str, tuple[Any, str]], list[str]]:
        """Values below the database, per setting name: (value, source); plus problems found."""
        problems: list[str] = []
        values: dict[str, tuple[Any, str]] = {}
        for name in config.settings.values:
            if name not in self._by_name:
                problems.append(f"settings.values: unknown setting '{name}'{self.suggest(name)}")
        for definition in self:
            value, source = definition.default, "default"
            if definition.config_key is not None:
                section, key = definition.config_key.split(".", 1)
                configured = getattr(getattr(config, section), key)
                if definition.type == JSON and isinstance(configured, tuple):
                    configured = list(configured)
                if config.sources.get(definition.config_key, "default") != "default" or definition.read_only:
                    value, source = configured, "config"
            elif definition.name in config.settings.values:
                try:
                    value = definition.validate(config.settings.values[definition.name])
                    source = "config"
                except InvalidValue as error:
                    problems.append(f"settings.values: {error.detail}")
            text = environ.get(definition.env_name)
            if text is not None and not definition.read_only:
                try:
                    value, source = definition.parse_text(text), "environment"
                except InvalidValue as error:
                    problems.append(f"{definition.env_name}: {error.detail}")
            values[definition.name] = (value, source)
        return values, problems
