"""The skeleton: settings, health, readiness, request ids, migrations."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from ingest.app import create_app
from ingest.config.env import settings_from_env
from ingest.config.settings import Secret, Settings, SettingsError
from storage.embedded import EmbeddedPostgres
from storage.migrations import apply_migrations
from tests.conftest import BASE_ENV, open_client

DB = "postgresql://db.example/ingest"


def test_missing_required_variable_outside_development_names_it() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "META_VERIFY_TOKEN"}
    env["APP_ENV"] = "production"
    env["DATABASE_URL"] = "postgresql://db.example/ingest"
    with pytest.raises(SettingsError, match="META_VERIFY_TOKEN"):
        settings_from_env(env, env_file=None)


def test_production_without_any_database_names_both_variables() -> None:
    env = {**BASE_ENV, "APP_ENV": "production"}
    with pytest.raises(SettingsError, match="DATABASE_URL or SUPABASE_URL"):
        settings_from_env(env, env_file=None)


def test_placeholder_secret_is_refused_in_production() -> None:
    env = {**BASE_ENV, "APP_ENV": "production", "DATABASE_URL": "postgresql://db/x"}
    env["META_VERIFY_TOKEN"] = "changeme"
    with pytest.raises(SettingsError, match=r"META_VERIFY_TOKEN.*placeholder"):
        settings_from_env(env, env_file=None)


def test_development_runs_on_documented_defaults() -> None:
    settings = settings_from_env({"APP_ENV": "development"}, env_file=None)
    assert settings.uses_embedded_database
    assert not settings.publishes_to_qstash
    assert settings.port == 8000
    assert settings.qstash_label == "instagram-messaging-event"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "-1"),
        ("PUBLIC_BASE_URL", "ftp://x"),
        ("APP_ENV", "staging"),
        ("QSTASH_LEEWAY_SECONDS", "-5"),
    ],
)
def test_malformed_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_from_env({**BASE_ENV, "DATABASE_URL": DB, name: value}, env_file=None)


def test_production_domain_is_an_alias_of_public_base_url() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "PUBLIC_BASE_URL"}
    env = {**env, "DATABASE_URL": DB, "PRODUCTION_DOMAIN": "https://a.example/"}
    settings = settings_from_env(env, env_file=None)
    assert settings.public_base_url == "https://a.example"


def test_env_file_is_read_and_real_environment_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9001\nQSTASH_LABEL=from-file\n")
    settings = settings_from_env(
        {**BASE_ENV, "DATABASE_URL": DB, "PORT": "9002"}, env_file=env_file
    )
    assert settings.port == 9002
    assert settings.qstash_label == "from-file"


def test_secrets_never_print(settings: Settings) -> None:
    text = repr(settings) + str(settings.meta_verify_token)
    assert "test-verify-token" not in text
    assert "test-meta-app-secret" not in text
    assert settings.meta_verify_token.reveal() == "test-verify-token"
    assert repr(Secret("x")) == "Secret('**********')"


async def test_healthz_answers_without_io(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "error": None}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_is_503_when_the_database_is_unreachable(
    make_settings: Callable[..., Settings], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(DATABASE_URL=f"postgresql://postgres@/x?host={tmp_path}&port=1")
    async for client in open_client(create_app(settings)):
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "error": "database unavailable"}


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert json.loads(response.text)["status"] == "not_found"


async def test_migrations_apply_once(pg_server: EmbeddedPostgres) -> None:
    url = pg_server.create_database("migrate_twice")
    try:
        first = await apply_migrations(url)
        second = await apply_migrations(url)
        assert second == []
        assert len(first) == len(set(first))
    finally:
        pg_server.drop_database("migrate_twice")


async def test_wrong_method_is_a_json_405_that_says_what_is_allowed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.json()["status"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


# --- what only development relaxes (issue 13) ---------------------------------------------


def _strict(**env: str) -> dict[str, str]:
    return {**BASE_ENV, "DATABASE_URL": DB, **env}


@pytest.mark.parametrize("env_name", ["test", "production"])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("META_APP_SECRETS", "a-real-secret,dev-meta-app-secret"),
        ("META_APP_SECRETS", "dev-verify-token"),
        ("META_VERIFY_TOKEN", "dev-verify-token"),
        ("INTERNAL_API_TOKEN", "dev-internal-token"),
        ("QSTASH_CURRENT_SIGNING_KEY", "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"),
        (
            "QSTASH_TOKEN",
            "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=",
        ),
        ("META_APP_SECRETS", "changeme"),
    ],
)
def test_published_development_values_are_refused_outside_development(
    env_name: str, name: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_from_env(_strict(APP_ENV=env_name, **{name: value}), env_file=None)


@pytest.mark.parametrize("value", [",", " , ,"])
def test_an_empty_secret_list_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="META_APP_SECRETS"):
        settings_from_env(_strict(META_APP_SECRETS=value), env_file=None)


def test_test_is_as_strict_as_production() -> None:
    bare = {"APP_ENV": "test", "DATABASE_URL": DB}
    with pytest.raises(SettingsError, match="META_APP_SECRETS is required"):
        settings_from_env(bare, env_file=None)
    with pytest.raises(SettingsError, match="DATABASE_URL or SUPABASE_URL"):
        settings_from_env({"APP_ENV": "test"}, env_file=None)
    assert not settings_from_env(_strict(), env_file=None).development


def test_publishing_without_a_public_url_outside_development_names_it() -> None:
    from ingest.config.base_url import resolve_base_url

    env = {k: v for k, v in _strict(QSTASH_TOKEN="a-real-token").items() if k != "PUBLIC_BASE_URL"}
    settings = settings_from_env(env, env_file=None)
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL"):
        resolve_base_url(settings, ngrok_api="http://127.0.0.1:9/api/tunnels")
    development = settings_from_env(
        {"APP_ENV": "development", "QSTASH_TOKEN": "t", "QSTASH_CURRENT_SIGNING_KEY": "k1",
         "QSTASH_NEXT_SIGNING_KEY": "k2"},
        env_file=None,
    )  # fmt: skip
    url = resolve_base_url(development, ngrok_api="http://127.0.0.1:9/api/tunnels")
    assert url == "http://localhost:8000"  # the QStash dev server can call it


async def test_the_handshake_echo_is_never_sniffed_as_html(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/webhooks/instagram",
        params={"hub.mode": "subscribe", "hub.verify_token": "test-verify-token",
                "hub.challenge": "<script>alert(1)</script>"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"].startswith("text/plain")
