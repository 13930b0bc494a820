"""Connected accounts' settings: the OAuth app, the token encryption keys, the refresh.

All optional (README, "Connecting accounts"): without `TOKEN_ENCRYPTION_KEY` no token is
stored (connecting and adding a Page token refuse, naming it; environment tokens work as
before); without `INSTAGRAM_APP_ID` there is no connect flow. `TOKEN_ENCRYPTION_KEY` is a
comma-separated list of keys (32 random bytes each, urlsafe base64): the first encrypts,
every one decrypts, so a key can rotate (`ingestctl accounts rotate-key`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.config.secret import Secret

DEFAULT_OAUTH_URL = "https://api.instagram.com"
DEFAULT_AUTHORIZE_URL = "https://www.instagram.com/oauth/authorize"
DEFAULT_FACEBOOK_GRAPH_URL = "https://graph.facebook.com/v21.0"
CALLBACK_PATH = "/api/oauth/instagram/callback"


@dataclass(frozen=True, slots=True)
class AccountSettings:
    app_id: str | None = None
    app_secret: Secret | None = None
    encryption_keys: tuple[bytes, ...] = ()
    oauth_url: str = DEFAULT_OAUTH_URL
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    redirect_url: str | None = None
    facebook_graph_url: str = DEFAULT_FACEBOOK_GRAPH_URL
    refresh_interval_seconds: int = 3600

    def __repr__(self) -> str:  # the keys never print
        return f"AccountSettings(app_id={self.app_id!r}, keys={len(self.encryption_keys)})"

    @property
    def stores_tokens(self) -> bool:
        return bool(self.encryption_keys)

    @property
    def connects(self) -> bool:
        """The connect flow needs the app, a key to store the token, and a redirect."""
        return bool(self.app_id and self.app_secret and self.stores_tokens and self.redirect_url)
