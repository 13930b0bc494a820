"""Connecting an Instagram account in one step: Instagram Login's OAuth flow.

`authorization_url` (for `ingestctl accounts connect` and the console's button) issues a
`state` that is signed (HMAC-SHA256 with the app secret: a forged one is refused before
anything else) and single-use (recorded in `ig_oauth_states`, used once, within 10
minutes: a replayed one is refused). The callback (`GET /api/oauth/instagram/callback`)
exchanges the code for a short-lived token, that for a long-lived one (60 days), reads
`/me` (`user_id` is the account webhooks name; `id` the app-scoped id Meta's callbacks
name), stores the account with its token encrypted, and subscribes it to the messaging
webhook fields. It answers a small page with one sentence; the token never appears in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import structlog

from contracts.graph import GraphApiError
from ingest.accounts.book import TokenBook
from ingest.accounts.cipher import TokenCipher
from ingest.accounts.meta import SCOPES, MetaAuth
from ingest.accounts.registry import INSTAGRAM_LOGIN, Registry
from ingest.config.connect import AccountSettings
from storage import StorageError

log = structlog.get_logger(__name__)

STATE_TTL_SECONDS = 600
NEEDED = "instagram_business_manage_messages"


class ConnectRefused(Exception):
    """The callback cannot connect an account; `status` and a sentence for the page."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


@dataclass(frozen=True, slots=True)
class Connected:
    account_id: str
    username: str | None
    expires_at: str | None
    subscribed: bool


def utc_now() -> datetime:
    return datetime.now(UTC)


class Connector:
    def __init__(
        self,
        settings: AccountSettings,
        registry: Registry,
        cipher: TokenCipher,
        meta: MetaAuth,
        book: TokenBook,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        assert settings.app_secret is not None
        assert settings.app_id is not None
        self._settings = settings
        self._key = settings.app_secret.reveal().encode()
        self._registry = registry
        self._cipher = cipher
        self._meta = meta
        self._book = book
        self._now = now

    async def authorization_url(self) -> str:
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time()) + STATE_TTL_SECONDS
        state = f"{nonce}.{expires}.{self._sign(nonce, expires)}"
        await self._registry.issue_state(nonce, STATE_TTL_SECONDS)
        query = urlencode({
            "client_id": self._settings.app_id, "redirect_uri": self._settings.redirect_url,
            "response_type": "code", "scope": ",".join(SCOPES), "state": state,
        })  # fmt: skip
        return f"{self._settings.authorize_url}?{query}"

    def _sign(self, nonce: str, expires: int) -> str:
        mac = hmac.new(self._key, f"ig-connect|{nonce}|{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    async def check_state(self, state: str) -> None:
        """Signed by us, not expired, and used now for the first time; else `ConnectRefused`."""
        nonce, _, rest = state.partition(".")
        expires_text, _, signature = rest.partition(".")
        if not (nonce and expires_text.isdigit() and signature) or len(state) > 200:
            raise ConnectRefused(400, "The link's state is malformed: start the connection again.")
        expected = self._sign(nonce, int(expires_text))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise ConnectRefused(403, "This link was not issued by this service.")
        if int(expires_text) < time.time():
            raise ConnectRefused(403, "This link has expired: start the connection again.")
        if not await self._registry.use_state(nonce):
            raise ConnectRefused(403, "This link was already used: start the connection again.")

    async def complete(self, code: str, state: str) -> Connected:
        await self.check_state(state)
        try:
            short = await self._meta.exchange_code(code)
        except GraphApiError as exc:
            log.warning("connect_code_refused", code=exc.code, status=exc.status)
            raise ConnectRefused(400, "Instagram refused the authorisation code.") from None
        if short.permissions and NEEDED not in short.permissions:
            raise ConnectRefused(403, f"The permission {NEEDED} was not granted.")
        try:
            granted = await self._meta.long_lived(short.token)
            me = await self._meta.me(granted.token)
        except GraphApiError as exc:
            log.warning("connect_exchange_failed", code=exc.code, status=exc.status)
            raise ConnectRefused(400, "Instagram did not give a long-lived token.") from None
        now = self._now()
        await self._registry.connect(
            me.account_id, source=INSTAGRAM_LOGIN,
            ciphertext=self._cipher.encrypt(granted.token, me.account_id),
            key_id=self._cipher.current, now=now, expires_in=granted.expires_in,
            username=me.username, app_user_id=me.app_user_id,
        )  # fmt: skip
        subscribed = True
        try:
            await self._meta.subscribe(granted.token)
        except GraphApiError as exc:
            subscribed = False
            log.warning("connect_not_subscribed", account=me.account_id, code=exc.code)
        await self._book.load()
        log.info("account_connected", account=me.account_id, subscribed=subscribed)
        expires = (
            datetime.fromtimestamp(now.timestamp() + granted.expires_in, UTC).date().isoformat()
            if granted.expires_in
            else None
        )
        return Connected(me.account_id, me.username, expires, subscribed)


async def callback(connector: Connector | None, params: dict[str, str]) -> tuple[int, str]:
    """The callback's status and sentence, from its query parameters."""
    if connector is None:
        return 404, "Connecting accounts is not configured on this service."
    if params.get("error"):
        reason = params.get("error_reason") or params["error"]
        status = 403 if reason in ("user_denied", "access_denied") else 400
        return status, "The connection was not allowed on Instagram: nothing was changed."
    code, state = params.get("code", ""), params.get("state", "")
    if not state:
        return 400, "The link carries no state: start the connection again."
    if not code:
        return 400, "The link carries no authorisation code: start the connection again."
    try:
        done = await connector.complete(code.removesuffix("#_"), state)
    except ConnectRefused as exc:
        return exc.status, exc.sentence
    except StorageError:
        return 503, "The database is unavailable: start the connection again in a moment."
    who = f"@{done.username}" if done.username else f"account {done.account_id}"
    sentence = f"Connected {who} (account {done.account_id})"
    sentence += f"; its token is valid until {done.expires_at}" if done.expires_at else ""
    if not done.subscribed:
        sentence += "; the webhook subscription failed: connect again to retry"
    return 200, sentence + "."
