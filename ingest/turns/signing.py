"""Standard Webhooks v1 signatures (standardwebhooks.com): a few lines of HMAC.

`webhook-id` is the turn's id (stable across retries and replays: the downstream's
idempotency key), `webhook-timestamp` the unix seconds at send time, and
`webhook-signature` one `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret,
space-separated, so a secret can be rotated without a gap. Signed afresh on every
attempt: receivers refuse a timestamp more than five minutes away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    keys: Iterable[bytes], webhook_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed with every key."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(k, webhook_id, timestamp, body) for k in keys),
    }
