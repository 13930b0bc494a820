"""Turn settings: the hand-off of each customer burst to the downstream bot or app.

`TURN_WEBHOOK_URL` unset: the feature is off and costs nothing (`read_turns` is None).
Set: `TURN_WEBHOOK_SECRET` is required (one or more Standard Webhooks `whsec_` secrets,
space-separated for rotation), and the URL may not point back at this service's own
routes (the seeds' loop: a hand-off that re-enters the webhook calls itself forever).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ingest.config.secret import Secret

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
MIN_KEY_BYTES = 16
# Every route this service answers: a hand-off to one of them would loop.
OWN_PATH_PREFIXES = (
    "/api/webhooks",
    "/api/qstash",
    "/api/internal",
    "/api/meta",
    "/console",
    "/metrics",
    "/healthz",
    "/readyz",
)


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Where and how turns are handed off, and the windows and limits that shape them."""

    webhook_url: str
    secrets: tuple[Secret, ...]
    quiet_seconds: float = 3.0
    max_wait_seconds: float = 30.0
    max_messages: int = 20
    hourly_limit: int = 30
    daily_limit: int = 100

    def as_sql(self) -> dict[str, float | int]:
        """The `p_settings` argument of `ingest_turn_configure` (what stores read)."""
        return {
            "quiet_seconds": self.quiet_seconds,
            "max_wait_seconds": self.max_wait_seconds,
            "max_messages": self.max_messages,
            "hourly_limit": self.hourly_limit,
            "daily_limit": self.daily_limit,
        }


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret (the base64 part, decoded); ValueError if not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the key must be at least {MIN_KEY_BYTES} bytes")
    return key
