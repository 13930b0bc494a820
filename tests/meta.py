"""Sign payloads the way Meta does, for tests and tools.

Independent of `ingest.edge.signature` on purpose: a test signer that called the
code under test could never disagree with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import META_SECRET

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
WEBHOOK = "/api/webhooks/instagram"


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


def fixture(name: str) -> Any:
    """A Meta delivery from `tests/fixtures/meta/<name>.json`."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def text_message(mid: str, sender: str = "1234567890123456", text: str = "hi") -> bytes:
    """A one-message delivery, as Meta would send it on the wire."""
    payload = fixture("text_message")
    item = payload["entry"][0]["messaging"][0]
    item["message"] = {"mid": mid, "text": text}
    item["sender"] = {"id": sender}
    return wire_bytes(payload)


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    """Deliver `body` to the webhook, signed."""
    return await client.post(WEBHOOK, content=body, headers=signed_headers(body))
