"""Reading one variable: present or not, typed, a URL, a secret (never a placeholder).

`Reader` is what `ingest.config.env` builds `Settings` with; every check names the
variable it read, so a refusal tells a person what to change. Only `APP_ENV=development`
relaxes anything: outside it, a placeholder or any published development value (ours,
and the QStash dev server's credentials) is refused wherever it appears.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit

from starlette.config import Config

from ingest.config.secret import Secret
from ingest.config.settings import AppEnv, SettingsError

T = TypeVar("T")

DEFAULT_QSTASH_URL = "https://qstash.upstash.io"
DEFAULT_LABEL = "instagram-messaging-event"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_GRAPH_API_URL = "https://graph.instagram.com/v21.0"
DEFAULT_RECONCILE_GRACE_SECONDS = 30.0
DEV_META_SECRET = "dev-meta-app-secret"  # noqa: S105 - a documented development default
DEV_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105
DEV_INTERNAL_TOKEN = "dev-internal-token"  # noqa: S105
# The QStash development server's fixed, published credentials
# (https://upstash.com/docs/qstash/howto/local-development).
QSTASH_DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="  # noqa: S105
QSTASH_DEV_KEYS = ("sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r", "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs")
CONSOLE_TOKEN_MIN_LENGTH, CONSOLE_SECRET_MIN_LENGTH = 16, 32  # outside development

# Values people paste from examples, and every published development secret: refused
# outside development wherever they appear (a list of secrets included).
_PLACEHOLDERS = frozenset(
    {"", "changeme", "change-me", "secret", "password", "token", "xxx", "todo", "replace-me"}
)
_PUBLISHED = frozenset(
    {DEV_META_SECRET, DEV_VERIFY_TOKEN, DEV_INTERNAL_TOKEN, QSTASH_DEV_TOKEN, *QSTASH_DEV_KEYS}
)


def published(value: str) -> bool:
    return value.lower() in _PLACEHOLDERS or value in _PUBLISHED


def non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {number}")
    return number


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


class Reader:
    """Reads and validates variables; each method names the variable it checks."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def raw(self, name: str) -> str | None:
        value = self._config(name, default=None)
        if value is None or str(value).strip() == "":
            return None
        return str(value).strip()

    def typed(self, name: str, parse: Callable[[str], T], default: T) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as exc:
            if isinstance(parse, type) and issubclass(parse, Enum):
                choices = ", ".join(str(member.value) for member in parse)
                raise SettingsError(f"{name} must be one of {choices}; got {value!r}") from None
            raise SettingsError(f"{name} is malformed: {exc}") from None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """One of `choices` (case-insensitive); a refusal lists them."""
        value = (self.raw(name) or default).lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    def positive_int(self, name: str, default: int) -> int:
        value = self.typed(name, int, default)
        if value <= 0:
            raise SettingsError(f"{name} must be a positive integer, got {value}")
        return value

    def positive_float(self, name: str, default: float) -> float:
        value = self.typed(name, float, default)
        if not value > 0:
            raise SettingsError(f"{name} must be a positive number, got {value}")
        return value

    def non_negative_float(self, name: str, default: float) -> float:
        value = self.typed(name, float, default)
        if not value >= 0:
            raise SettingsError(f"{name} must be 0 or a positive number, got {value}")
        return value

    def url(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None:
            return default
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"{name} must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def secret(self, name: str, *, required: bool, dev_default: str | None = None) -> Secret | None:
        value = self.raw(name)
        if value is None and self.development and dev_default is not None:
            return Secret(dev_default)
        if value is None:
            if required:
                raise SettingsError(f"{name} is required (see .env.example)")
            return None
        if not self.development and published(value):
            raise SettingsError(f"{name} holds a placeholder or a published development value")
        return Secret(value)

    @property
    def development(self) -> bool:
        return self.app_env() is AppEnv.DEVELOPMENT

    def app_env(self) -> AppEnv:
        return self.typed("APP_ENV", AppEnv, AppEnv.PRODUCTION)
