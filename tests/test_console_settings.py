"""The console's two variables: off without `CONSOLE_TOKEN`; its secret guarded like others."""

from __future__ import annotations

import pytest

from ingest.config.env import settings_from_env
from ingest.config.settings import DEV_CONSOLE_SESSION_SECRET, Settings, SettingsError
from tests.conftest import BASE_ENV

PRODUCTION = {**BASE_ENV, "APP_ENV": "production", "DATABASE_URL": "postgresql://db/x"}
LONG_TOKEN = "an-operator-token-long-enough"
LONG_SECRET = "a-session-secret-of-at-least-thirty-two-chars"


def settings(**env: str) -> Settings:
    return settings_from_env(env, env_file=None)


def test_without_a_token_there_is_no_console() -> None:
    assert settings(**PRODUCTION).console is None
    assert settings(**PRODUCTION, CONSOLE_SESSION_SECRET=LONG_SECRET).console is None


def test_in_development_the_session_secret_has_a_default() -> None:
    access = settings(**{**BASE_ENV, "APP_ENV": "development"}, CONSOLE_TOKEN="short").console
    assert access is not None
    assert access.session_secret.reveal() == DEV_CONSOLE_SESSION_SECRET
    assert "short" not in repr(access) and DEV_CONSOLE_SESSION_SECRET not in repr(access)


def test_in_production_the_session_secret_is_required() -> None:
    with pytest.raises(SettingsError, match="CONSOLE_SESSION_SECRET is required"):
        settings(**PRODUCTION, CONSOLE_TOKEN=LONG_TOKEN)


@pytest.mark.parametrize(
    ("token", "secret", "named"),
    [
        (LONG_TOKEN, DEV_CONSOLE_SESSION_SECRET, "CONSOLE_SESSION_SECRET holds a placeholder"),
        (LONG_TOKEN, "changeme", "CONSOLE_SESSION_SECRET holds a placeholder"),
        ("changeme", LONG_SECRET, "CONSOLE_TOKEN holds a placeholder"),
        ("too-short", LONG_SECRET, "CONSOLE_TOKEN needs at least 16"),
        (LONG_TOKEN, "short-secret", "CONSOLE_SESSION_SECRET needs at least 32"),
    ],
)
def test_in_production_weak_values_are_refused_by_name(token: str, secret: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        settings(**PRODUCTION, CONSOLE_TOKEN=token, CONSOLE_SESSION_SECRET=secret)


def test_in_production_real_values_are_taken() -> None:
    access = settings(**PRODUCTION, CONSOLE_TOKEN=LONG_TOKEN, CONSOLE_SESSION_SECRET=LONG_SECRET)
    assert access.console is not None
    assert access.console.token.reveal() == LONG_TOKEN
