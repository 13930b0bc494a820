"""Settings and helpers for the accounts tests: a service wired to the Graph double for
every Meta host (the OAuth host, the Graph host, the Facebook Graph host)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ingest.config.settings import Settings
from tests.doubles.graph_oauth import APP_ID

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()  # TOKEN_ENCRYPTION_KEY, tests only
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
ACCOUNT = "17841400000000001"
OTHER_ACCOUNT = "17841400000000002"
CALLBACK = "/api/oauth/instagram/callback"


def account_env(graph_server: tuple[Any, str], **env: str) -> dict[str, str]:
    _, url = graph_server  # `<root>/v21.0`
    return {
        "INSTAGRAM_APP_ID": APP_ID,
        "TOKEN_ENCRYPTION_KEY": KEY,
        "INSTAGRAM_OAUTH_URL": url.removesuffix("/v21.0"),
        "GRAPH_API_URL": url,
        "FACEBOOK_GRAPH_API_URL": url,
        "RECONCILE_GRACE_SECONDS": "0",
        **env,
    }


def account_settings(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str], **env: str
) -> Settings:
    return make_settings(**account_env(graph_server, **env))
