"""`ingestctl send-sample`: POST a signed sample webhook to a running instance.

`--url` takes the service's base URL or the webhook's own; each call sends a fresh mid
(`m_sample_<time>`) unless `--mid` names one, so a second call is a new message, not a
duplicate. The service's JSON answer is printed as it came, on one line of stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

import httpx

from ingest.config.settings import Settings
from ingest.ops.output import OK, UNREACHABLE, Failed

WEBHOOK_PATH = "/api/webhooks/instagram"

SAMPLE: dict[str, Any] = {
    "object": "instagram",
    "entry": [
        {
            "id": "17841400000000001",
            "time": 1732500000123,
            "messaging": [
                {
                    "sender": {"id": "1234567890123456"},
                    "recipient": {"id": "17841400000000001"},
                    "timestamp": 1732500000001,
                    "message": {
                        "mid": "m_ingestctl_sample",
                        "text": "Hi! Is the blue one available?",
                    },
                }
            ],
        }
    ],
}


def add_parser(sub: Any, common: Any) -> None:
    smp = sub.add_parser("send-sample", parents=[common], help="POST a signed sample webhook")
    smp.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the service (http://127.0.0.1:8000) or its webhook URL (…/api/webhooks/instagram)",
    )
    smp.add_argument("--mid", help="the message id to send (default: a fresh one each call)")


def webhook_url(url: str) -> str:
    """The webhook's URL from either form an operator may give."""
    url = url.strip().rstrip("/")
    return url if url.endswith(WEBHOOK_PATH) else url + WEBHOOK_PATH


def sample(mid: str | None = None, *, now_ms: int | None = None) -> dict[str, Any]:
    """The sample delivery, with `mid` (or a fresh one) and the time of sending."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    delivery = copy.deepcopy(SAMPLE)
    entry = delivery["entry"][0]
    entry["time"] = now_ms
    item = entry["messaging"][0]
    item["timestamp"] = now_ms
    item["message"]["mid"] = mid or f"m_sample_{now_ms}"
    return delivery


async def send_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.edge.signature import expected_signature

    body = json.dumps(sample(args.mid), separators=(",", ":")).encode()
    secret = settings.meta_app_secrets[0].reveal()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": expected_signature(body, secret),
    }
    url = webhook_url(args.url)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        why = str(exc) or "no answer"
        raise Failed(
            f"the service at {url} cannot be reached ({why}); is it running (make run)?",
            UNREACHABLE,
        ) from exc
    try:
        answer = response.json()
    except ValueError:
        answer = {"status": "unreadable", "error": f"HTTP {response.status_code}, not JSON"}
    print(json.dumps(answer))
    if response.status_code != 200:
        raise Failed(f"the service answered HTTP {response.status_code} at {url}")
    return OK
