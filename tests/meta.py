"""Sign payloads the way Meta does, for tests and tools.

Independent of `ingest.meta_signature` on purpose: a test signer that called the
code under test could never disagree with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from tests.conftest import META_SECRET


def sign(body: bytes, secret: str = META_SECRET) -> str:
    """The `X-Hub-Signature-256` header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wire_bytes(payload: Any) -> bytes:
    """JSON as Meta writes it: non-ASCII escaped as \\uXXXX and '/' as '\\/'."""
    return (
        json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()
    )


def signed_headers(body: bytes, secret: str = META_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}
