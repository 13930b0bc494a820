"""Threads of messages for reconcile tests: as the Graph double holds them, and as the
webhook Meta would have sent for each (so a test can deliver some and lose others)."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.doubles.graph_api import Message
from tests.meta import wire_bytes

ACCOUNT = "17841400000000001"
OTHER_ACCOUNT = "17841400000000002"
CUSTOMER = "1234567890123456"
TOKEN_A = "IGAA-reconcile-a"
TOKEN_B = "IGAA-reconcile-b"


def mid(n: int, thread: int = 1) -> str:
    """A mid shaped like Meta's (base64, long); distinct per thread and position."""
    return (
        "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcx"
        f"MDMwMTI0NDI1OTk1NjAz{thread:03d}{n:05d}"
    )


def thread(
    count: int,
    *,
    number: int = 1,
    account: str = ACCOUNT,
    customer: str = CUSTOMER,
    start: int | None = None,
    step: int = 60,
) -> list[Message]:
    """`count` messages, oldest first, a minute apart, ending about now: the customer
    writes the even ones, the business answers with the odd ones."""
    start = start if start is not None else int(time.time()) - count * step
    return [
        Message(
            mid(i, number),
            customer if i % 2 == 0 else account,
            account if i % 2 == 0 else customer,
            start + i * step,
            text=f"message {i} of thread {number}",
        )
        for i in range(count)
    ]


def webhook_for(message: Message, account: str = ACCOUNT) -> bytes:
    """The delivery Meta sends for `message` (an echo when the business wrote it)."""
    body: dict[str, Any] = {"mid": message.mid, "text": message.text}
    if message.sender == account:
        body["is_echo"] = True
    item = {
        "sender": {"id": message.sender},
        "recipient": {"id": message.recipient},
        "timestamp": message.created * 1000 + 417,
        "message": body,
    }
    envelope = {"object": "instagram",
                "entry": [{"id": account, "time": message.created * 1000 + 500,
                           "messaging": [item]}]}  # fmt: skip
    return wire_bytes(envelope)


def reaction_to(message_mid: str, account: str = ACCOUNT, customer: str = CUSTOMER) -> bytes:
    """A customer's reaction webhook naming `message_mid`."""
    now = int(time.time() * 1000)
    item = {"sender": {"id": customer}, "recipient": {"id": account}, "timestamp": now,
            "reaction": {"mid": message_mid, "action": "react", "reaction": "love",
                         "emoji": "\u2764\ufe0f"}}  # fmt: skip
    return wire_bytes({"object": "instagram", "entry": [{"id": account, "time": now,
                                                         "messaging": [item]}]})  # fmt: skip


def usage_header(minutes: int, account: str = ACCOUNT, percent: int = 100) -> dict[str, str]:
    """`X-Business-Use-Case-Usage` as Meta sends it: `estimated_time_to_regain_access`
    in minutes, percentages of the limit."""
    usage = {"type": "instagram", "call_count": percent, "total_cputime": 5, "total_time": 5,
             "estimated_time_to_regain_access": minutes}  # fmt: skip
    return {"X-Business-Use-Case-Usage": json.dumps({account: [usage]})}
