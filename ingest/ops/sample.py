"""`ingestctl send-sample`: POST a signed sample webhook to a running instance."""

from __future__ import annotations

import argparse
import json

import httpx

from ingest.config.settings import Settings
from ingest.ops.output import OK, TROUBLE, UNAVAILABLE, Failed, emit

SAMPLE = {
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


async def send_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.edge.signature import expected_signature

    body = json.dumps(SAMPLE, separators=(",", ":")).encode()
    secret = settings.meta_app_secrets[0].reveal()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": expected_signature(body, secret),
    }
    url = args.url.rstrip("/") + "/api/webhooks/instagram"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Failed(f"could not reach {url}: {exc}", UNAVAILABLE) from exc
    emit(
        args,
        {"status": response.status_code, "answer": response.json()},
        lambda d: f"{d['status']} {d['answer']}",
    )
    return OK if response.status_code == 200 else TROUBLE
