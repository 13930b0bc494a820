"""What the turn tests share: contract events and Meta deliveries with *current*
timestamps (a turn never opens for a message older than Meta's 24-hour window), short
windows, a Standard Webhooks secret, and the README's receiver, run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.meta import wire_bytes

ACCOUNT = "17841400000000001"
SECRET = "whsec_dGhlLXR1cm4tc2VjcmV0LWZvci10ZXN0cy0wMTIzNDU2Nzg5"  # base64 of 36 bytes
RECEIVER_PATH = "/turns"
FAST: dict[str, float | int] = {
    "quiet_seconds": 0.3,
    "max_wait_seconds": 3.0,
    "max_messages": 20,
    "hourly_limit": 30,
    "daily_limit": 100,
}
README = Path(__file__).resolve().parent.parent / "README.md"


def now_ms(offset_seconds: float = 0.0) -> int:
    return int((time.time() + offset_seconds) * 1000)


def message_event(
    mid: str,
    customer: str,
    *,
    ts: int | None = None,
    text: str | None = "hi",
    direction: str = "in",
    **extra: Any,
) -> dict[str, Any]:
    """A contract v2 message event, as the parser makes it."""
    inbound = direction == "in"
    return {
        "v": 2,
        "kind": "message",
        "dedup_id": f"ig_msg_{mid}",
        "account_id": ACCOUNT,
        "sender_id": customer if inbound else ACCOUNT,
        "recipient_id": ACCOUNT if inbound else customer,
        "timestamp": now_ms() if ts is None else ts,
        "mid": mid,
        "text": text,
        "direction": direction,
        "raw": {},
        **extra,
    }


def item(
    mid: str, customer: str, ts: int, text: str = "hi", *, echo: bool = False
) -> dict[str, Any]:
    """One `messaging[]` item as Meta sends it (an echo: the business wrote it)."""
    message: dict[str, Any] = {"mid": mid, "text": text}
    if echo:
        message["is_echo"] = True
        return {
            "sender": {"id": ACCOUNT},
            "recipient": {"id": customer},
            "timestamp": ts,
            "message": message,
        }
    return {
        "sender": {"id": customer},
        "recipient": {"id": ACCOUNT},
        "timestamp": ts,
        "message": message,
    }


def delivery(*items: dict[str, Any]) -> bytes:
    """One webhook delivery carrying `items`, on the wire as Meta writes it."""
    payload = {
        "object": "instagram",
        "entry": [{"id": ACCOUNT, "time": now_ms(), "messaging": list(items)}],
    }
    return wire_bytes(payload)


def readme_receiver() -> str:
    """The Python block of the README's "Hand-off to your bot" section, verbatim."""
    text = README.read_text()
    section = text.split("## Hand-off to your bot", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "the README's hand-off section lost its receiver"
    return match.group(1)


def load_receiver(answered: list[dict[str, Any]]) -> Any:
    """The README's receiver as a Starlette app; each turn it answers lands in `answered`."""
    import os

    os.environ["TURN_WEBHOOK_SECRET"] = SECRET
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(compile(readme_receiver(), "README.md", "exec"), namespace)
    namespace["answer"] = answered.append
    return namespace["app"]


class Flaky:
    """An ASGI wrapper: the first `failures` requests answer 500; every request is kept."""

    def __init__(self, app: Any, failures: int = 0) -> None:
        self.app, self.failures = app, failures
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body))
        if len(self.requests) <= self.failures:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            return await send({"type": "http.response.body", "body": b"down"})

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
