"""Make `Upstash-Signature` tokens exactly as QStash does
(https://upstash.com/docs/qstash/howto/signature).

Built by hand (HMAC-SHA256 over base64url JSON), not with PyJWT, so that it is
independent of the verifier under test; its tokens are proven against qstash-py's
`Receiver` and the TypeScript `@upstash/qstash` `Receiver` in test_qstash_signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any


def _b64url(data: bytes, *, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


def sign(
    body: bytes,
    url: str,
    key: str,
    *,
    now: float | None = None,
    lifetime: int = 300,
    issuer: str = "Upstash",
    body_claim: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A QStash JWT for a delivery of `body` to `url`, signed with `key`.

    `now` shifts the clock (skew drills); `body_claim` overrides the hash (tamper tests).
    The body hash is padded, as in QStash's documented example.
    """
    iat = int(time.time() if now is None else now)
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "iss": issuer,
        "sub": url,
        "exp": iat + lifetime,
        "nbf": iat,
        "iat": iat,
        "jti": "jwt_" + secrets.token_hex(12),
        "body": body_claim
        if body_claim is not None
        else _b64url(hashlib.sha256(body).digest(), pad=True),
        **(extra or {}),
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


def delivery_headers(body: bytes, url: str, key: str, **kwargs: Any) -> dict[str, str]:
    """Headers QStash sends with a delivery (first attempt)."""
    return {
        "Content-Type": "application/json",
        "Upstash-Signature": sign(body, url, key, **kwargs),
        "Upstash-Message-Id": "msg_" + secrets.token_hex(8),
        "Upstash-Retried": "0",
    }
