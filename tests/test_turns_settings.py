"""Turn settings: off unless TURN_WEBHOOK_URL is set; start-up refuses a hand-off that
would call this service back (the seeds' loop) and a missing or malformed secret."""

from __future__ import annotations

import pytest

from ingest.config.env import settings_from_env
from ingest.config.settings import SettingsError
from tests.conftest import BASE_ENV, PUBLIC_BASE_URL
from tests.turn_kit import SECRET

ENV = {**BASE_ENV, "DATABASE_URL": "postgresql://u@localhost/db"}


def read(**overrides: str) -> object:
    return settings_from_env({**ENV, **overrides}, env_file=None)


def test_turns_are_off_without_a_webhook_url() -> None:
    settings = settings_from_env(ENV, env_file=None)
    assert settings.turns is None


def test_turn_settings_take_their_defaults_and_http_or_https() -> None:
    for url in ("http://bot.internal:9000/turns", "https://bot.example/hook"):
        settings = settings_from_env(
            {**ENV, "TURN_WEBHOOK_URL": url, "TURN_WEBHOOK_SECRET": SECRET}, env_file=None
        )
        assert settings.turns is not None
        assert (settings.turns.webhook_url, settings.turns.quiet_seconds) == (url, 3.0)
        assert (settings.turns.max_wait_seconds, settings.turns.max_messages) == (30.0, 20)
        assert (settings.turns.hourly_limit, settings.turns.daily_limit) == (30, 100)
        assert SECRET not in repr(settings.turns)


@pytest.mark.parametrize(
    "url",
    [
        PUBLIC_BASE_URL + "/api/webhooks/instagram",
        PUBLIC_BASE_URL + "/api/qstash/instagram-ingestion",
        PUBLIC_BASE_URL.upper().replace("HTTPS", "https") + "/api/internal/ingest-event",
        "http://localhost:8000/api/webhooks/instagram",
        "http://127.0.0.1:8000/api/qstash/failures/",
        PUBLIC_BASE_URL + ":443/console",
    ],
)
def test_start_up_refuses_a_turn_webhook_url_pointing_at_this_service(url: str) -> None:
    with pytest.raises(SettingsError, match="TURN_WEBHOOK_URL points at this service"):
        read(TURN_WEBHOOK_URL=url, TURN_WEBHOOK_SECRET=SECRET)


def test_the_same_paths_on_another_host_are_a_bot_and_accepted() -> None:
    read(TURN_WEBHOOK_URL="https://bot.example/api/webhooks/instagram", TURN_WEBHOOK_SECRET=SECRET)
    read(TURN_WEBHOOK_URL="http://localhost:9000/api/webhooks/x", TURN_WEBHOOK_SECRET=SECRET)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "TURN_WEBHOOK_SECRET is required"),
        ("plainsecret", "TURN_WEBHOOK_SECRET is malformed: must start with whsec_"),
        ("whsec_not base64!", "TURN_WEBHOOK_SECRET is malformed"),
        ("whsec_c2hvcnQ=", "TURN_WEBHOOK_SECRET is malformed: the key must be at least 16 bytes"),
        (f"{SECRET} whsec_@@@", "TURN_WEBHOOK_SECRET is malformed"),
        ("changeme", "TURN_WEBHOOK_SECRET holds a placeholder"),
    ],
)
def test_start_up_refuses_a_missing_or_malformed_secret(secret: str | None, message: str) -> None:
    env = {"TURN_WEBHOOK_URL": "https://bot.example/turns"}
    if secret is not None:
        env["TURN_WEBHOOK_SECRET"] = secret
    with pytest.raises(SettingsError, match=message):
        read(**env)


def test_max_wait_shorter_than_quiet_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="TURN_MAX_WAIT_SECONDS"):
        read(
            TURN_WEBHOOK_URL="https://bot.example/turns",
            TURN_WEBHOOK_SECRET=SECRET,
            TURN_QUIET_SECONDS="10",
            TURN_MAX_WAIT_SECONDS="5",
        )


def test_several_secrets_rotate_and_each_signs() -> None:
    from standardwebhooks import Webhook

    from ingest.config.turns import signing_key
    from ingest.turns import signing

    other = "whsec_" + "b3RoZXItc2VjcmV0LWtleS0wMTIzNDU2Nzg5"
    settings = settings_from_env(
        {
            **ENV,
            "TURN_WEBHOOK_URL": "https://bot.example/t",
            "TURN_WEBHOOK_SECRET": f"{SECRET} {other}",
        },
        env_file=None,
    )
    assert settings.turns is not None
    keys = tuple(signing_key(s.reveal()) for s in settings.turns.secrets)
    body = b'{"turn":1}'
    headers = signing.headers(keys, "ig_turn_msg_x", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, other):  # a receiver holding either secret verifies
        Webhook(secret).verify(body, headers)


def test_openapi_documents_the_turn_contract_exactly_as_its_json_schema() -> None:
    import json
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    spec = yaml.safe_load((root / "openapi.yaml").read_text())
    schema = json.loads((root / "contracts" / "schema" / "turn.v1.json").read_text())
    turn = dict(spec["components"]["schemas"]["Turn"])
    assert turn["properties"]["messages"]["items"] == {"$ref": "#/components/schemas/TurnMessage"}
    expected = {k: v for k, v in schema.items() if k not in ("$schema", "$id", "$defs")}
    turn["properties"] = {**turn["properties"], "messages": expected["properties"]["messages"]}
    assert turn == expected
    assert spec["components"]["schemas"]["TurnMessage"] == schema["$defs"]["TurnMessage"]
    post = spec["webhooks"]["conversationTurn"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Turn"
    }
