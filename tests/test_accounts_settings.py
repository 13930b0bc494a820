"""The accounts' settings (each refusal names its variable), the token cipher, and the
accounts' metrics."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from ingest.accounts.cipher import TokenCipher, TokenUnreadable
from ingest.accounts.registry import Registry
from ingest.app import create_app
from ingest.config.connect_env import decode_key
from ingest.config.settings import Settings, SettingsError
from storage.postgres import PostgresBackend
from tests.accounts_kit import ACCOUNT, KEY, NEW_KEY, OTHER_ACCOUNT, TOKEN_A, TOKEN_B, connected
from tests.conftest import META_SECRET, PUBLIC_BASE_URL, open_client


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TOKEN_ENCRYPTION_KEY": "not base64 at all!"}, "TOKEN_ENCRYPTION_KEY"),
        ({"TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(b"short").decode()},
         "TOKEN_ENCRYPTION_KEY"),
        ({"TOKEN_ENCRYPTION_KEY": f"{KEY},changeme"}, "TOKEN_ENCRYPTION_KEY"),
        ({"INSTAGRAM_APP_ID": "my-app"}, "INSTAGRAM_APP_ID"),
        ({"OAUTH_REDIRECT_URL": "ftp://x"}, "OAUTH_REDIRECT_URL"),
        ({"ACCOUNT_REFRESH_INTERVAL_SECONDS": "-1"}, "ACCOUNT_REFRESH_INTERVAL_SECONDS"),
    ],
)  # fmt: skip
def test_a_malformed_accounts_setting_stops_start_up_naming_it(
    make_settings: Callable[..., Settings], env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        make_settings(**env)


def test_the_defaults_derive_the_redirect_and_the_app_secret(
    make_settings: Callable[..., Settings],
) -> None:
    accounts = make_settings(
        INSTAGRAM_APP_ID="1234", TOKEN_ENCRYPTION_KEY=f"{KEY},{NEW_KEY}"
    ).accounts
    assert accounts.redirect_url == f"{PUBLIC_BASE_URL}/api/oauth/instagram/callback"
    assert accounts.app_secret is not None and accounts.app_secret.reveal() == META_SECRET
    assert accounts.encryption_keys == (decode_key(KEY), decode_key(NEW_KEY))
    assert accounts.connects and KEY not in repr(accounts)
    assert not make_settings().accounts.connects  # all optional


def test_a_ciphertext_opens_only_for_its_account_and_with_a_listed_key() -> None:
    old, new = TokenCipher((decode_key(KEY),)), TokenCipher((decode_key(NEW_KEY), decode_key(KEY)))
    sealed = old.encrypt(TOKEN_A, ACCOUNT)
    assert TOKEN_A not in sealed and sealed != old.encrypt(TOKEN_A, ACCOUNT)  # a fresh nonce
    assert new.decrypt(sealed, ACCOUNT) == TOKEN_A  # rotation: every listed key decrypts
    with pytest.raises(TokenUnreadable):
        old.decrypt(sealed, OTHER_ACCOUNT)  # copied onto another account's row
    with pytest.raises(TokenUnreadable):
        TokenCipher((decode_key(NEW_KEY),)).decrypt(sealed, ACCOUNT)  # its key is gone
    with pytest.raises(TokenUnreadable):
        old.decrypt(sealed[:-4] + "AAAA", ACCOUNT)  # tampered


async def test_metrics_count_accounts_by_state_and_the_soonest_expiry(
    make_settings: Callable[..., Settings],
    backend: PostgresBackend,
) -> None:
    await connected(backend, ACCOUNT, TOKEN_A, expires_in=5 * 86_400)
    await connected(backend, OTHER_ACCOUNT, TOKEN_B)
    await Registry(backend).graph_error(OTHER_ACCOUNT, 190, reauth=True)
    settings = make_settings(TOKEN_ENCRYPTION_KEY=KEY, METRICS_PUBLIC="true")
    async for client in open_client(create_app(settings)):
        text = (await client.get("/metrics")).text
    assert 'ingest_accounts{state="active"} 1.0' in text
    assert 'ingest_accounts{state="needs_reauth"} 1.0' in text
    assert 'ingest_accounts{state="deauthorized"} 0.0' in text
    (line,) = [x for x in text.splitlines() if x.startswith("ingest_accounts_token_days_left ")]
    assert 4.9 < float(line.split()[1]) <= 5.0
    assert ACCOUNT not in text and TOKEN_A not in text
