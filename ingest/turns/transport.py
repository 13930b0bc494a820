"""Handing one turn off: a direct POST to TURN_WEBHOOK_URL, or one QStash message.

Direct: signed at send time, one attempt per claim; the relay retries with a backoff
kept in the database (`next_attempt_at`), so a restart loses no retry.

QStash: `POST /v2/publish/<TURN_WEBHOOK_URL>`, one message per turn, deduplication ID =
turn id, the Standard Webhooks headers forwarded with `Upstash-Forward-…`, retries
scheduled with `Upstash-Retry-Delay` so that the last attempt still falls within the
receivers' five-minute tolerance of the timestamp signed at publish (3 retries at 10, 20
and 40 s after attempts of at most 30 s: under 3.5 minutes), and a failure callback that
marks the turn `failed`. No flow control: a turn queued behind a retrying one would
outlive its signature; order is carried by `seq`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import structlog

from ingest.delivery.publisher import Accepted, Outcome, Refused
from ingest.turns import signing

log = structlog.get_logger(__name__)

LABEL = "instagram-conversation-turn"
FAILURE_PATH = "/api/qstash/turn-failures"
RETRIES = 3
RETRY_DELAY = "pow(2, retried) * 10000"  # milliseconds: 10 s, 20 s, 40 s
ATTEMPT_TIMEOUT = "30s"


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int


@dataclass(frozen=True, slots=True)
class NotDelivered:
    reason: str


Attempt = Delivered | NotDelivered


def encode(body: dict[str, object]) -> bytes:
    """The exact bytes that are signed and sent (compact JSON, UTF-8)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class DirectSender:
    """POST a turn to the downstream, signed afresh."""

    def __init__(self, http: httpx.AsyncClient, url: str, keys: tuple[bytes, ...]) -> None:
        self._http = http
        self._url = url
        self._keys = keys

    async def send(self, turn_id: str, body: bytes) -> Attempt:
        headers = {"Content-Type": "application/json", **signing.headers(self._keys, turn_id, body)}
        try:
            response = await self._http.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return NotDelivered(f"unreachable: {type(exc).__name__}")
        if 200 <= response.status_code < 300:
            return Delivered(response.status_code)
        return NotDelivered(f"downstream answered {response.status_code}")


class TurnPublisher:
    """Publish one turn through QStash (`/v2/publish`)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        qstash_url: str,
        token: str,
        destination: str,
        failure_callback: str,
        keys: tuple[bytes, ...],
        timeout_seconds: float = 4.0,
    ) -> None:
        self._http = http
        self._url = qstash_url.rstrip("/") + "/v2/publish/" + destination
        self._token = token
        self.destination = destination
        self._failure_callback = failure_callback
        self._keys = keys
        self._timeout = timeout_seconds

    async def publish(self, turn_id: str, body: bytes) -> Outcome:
        signed = signing.headers(self._keys, turn_id, body)
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Upstash-Deduplication-Id": turn_id,
            "Upstash-Label": LABEL,
            "Upstash-Retries": str(RETRIES),
            "Upstash-Retry-Delay": RETRY_DELAY,
            "Upstash-Timeout": ATTEMPT_TIMEOUT,
            "Upstash-Failure-Callback": self._failure_callback,
            "Upstash-Forward-Content-Type": "application/json",
            **{f"Upstash-Forward-{name}": value for name, value in signed.items()},
        }
        try:
            response = await self._http.post(
                self._url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            log.warning("turn_publish_failed", error=type(exc).__name__)
            return None
        status = response.status_code
        if status == 429 or status >= 500:
            return None
        if status >= 400:
            return Refused(f"QStash answered {status}")
        try:
            answer = response.json()
        except ValueError:
            return None
        if isinstance(answer, dict) and isinstance(answer.get("messageId"), str):
            return Accepted(answer["messageId"], deduplicated=answer.get("deduplicated") is True)
        return None
