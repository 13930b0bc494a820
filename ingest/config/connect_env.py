"""Reading `AccountSettings` (`ingest.config.connect`) from the environment."""

from __future__ import annotations

import base64
import binascii

from ingest.config.connect import (
    CALLBACK_PATH,
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_FACEBOOK_GRAPH_URL,
    DEFAULT_OAUTH_URL,
    AccountSettings,
)
from ingest.config.reader import DEV_META_SECRET, Reader
from ingest.config.secret import Secret
from ingest.config.settings import SettingsError

KEY_BYTES = 32


def decode_key(value: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("a key is not urlsafe base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"a key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def read_account_settings(reader: Reader) -> AccountSettings:
    """`AccountSettings` from the environment; `SettingsError` names a malformed variable."""
    keys_value = reader.secret("TOKEN_ENCRYPTION_KEY", required=False)
    keys: list[bytes] = []
    if keys_value is not None:
        try:
            keys = [decode_key(k.strip()) for k in keys_value.reveal().split(",") if k.strip()]
        except ValueError as exc:
            raise SettingsError(f"TOKEN_ENCRYPTION_KEY is malformed: {exc}") from None
    app_id = reader.raw("INSTAGRAM_APP_ID")
    if app_id is not None and not app_id.isdigit():
        raise SettingsError("INSTAGRAM_APP_ID must be the app's id (digits)")
    app_secret = reader.secret("INSTAGRAM_APP_SECRET", required=False)
    if app_secret is None and app_id is not None:  # default: the first of META_APP_SECRETS
        meta = reader.secret("META_APP_SECRETS", required=False, dev_default=DEV_META_SECRET)
        first = meta.reveal().split(",")[0].strip() if meta is not None else ""
        app_secret = Secret(first) if first else None
    public_base_url = reader.url("PUBLIC_BASE_URL") or reader.url("PRODUCTION_DOMAIN")
    default_redirect = f"{public_base_url}{CALLBACK_PATH}" if public_base_url else None
    interval = reader.typed("ACCOUNT_REFRESH_INTERVAL_SECONDS", int, 3600)
    if interval < 0:
        raise SettingsError(
            f"ACCOUNT_REFRESH_INTERVAL_SECONDS must be 0 (off) or more, got {interval}"
        )
    return AccountSettings(
        app_id=app_id,
        app_secret=app_secret,
        encryption_keys=tuple(keys),
        oauth_url=reader.url("INSTAGRAM_OAUTH_URL", DEFAULT_OAUTH_URL) or DEFAULT_OAUTH_URL,
        authorize_url=reader.url("INSTAGRAM_AUTHORIZE_URL", DEFAULT_AUTHORIZE_URL)
        or DEFAULT_AUTHORIZE_URL,
        redirect_url=reader.url("OAUTH_REDIRECT_URL", default_redirect),
        facebook_graph_url=reader.url("FACEBOOK_GRAPH_API_URL", DEFAULT_FACEBOOK_GRAPH_URL)
        or DEFAULT_FACEBOOK_GRAPH_URL,
        refresh_interval_seconds=interval,
    )
