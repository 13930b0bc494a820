"""Publishing to QStash: one `/v2/batch` call per chunk of up to 100 events, within a budget.

Every message carries its dedup ID, `Upstash-Timeout: 30s`, `Upstash-Retries: 3`,
our label and the failure callback. What the messages share (`template`) is spelled
by qstash-py's own `prepare_batch_message_body` (its `batch_json` drops `label`);
the ledger fills in each message's dedup ID and body when the relay claims them, so
the relay forwards the batch as bytes. It is sent by `ingest.delivery.poster` (aiohttp,
for what a call costs), and every answer is read whole: status, `Retry-After`,
`Burst-RateLimit-Reset`, and a body that may not be what it should.

Outcomes, per item: `Accepted` (QStash took it, perhaps as a duplicate it already
had), `Refused` (QStash answered 4xx other than 429 for it: the relay stores it
directly), or `None` (unknown: QStash unreachable, 5xx, 429, or an answer we cannot
read, still so when the budget ran out). Retrying under the same dedup IDs is safe:
QStash absorbs a repeat within its 10-minute window.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from qstash.message import BatchRequest, prepare_batch_message_body
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from ingest.delivery.poster import NoReply, Poster, Reply

log = structlog.get_logger(__name__)

CONSUMER_PATH = "/api/qstash/instagram-ingestion"
FAILURE_PATH = "/api/qstash/failures"
ATTEMPT_TIMEOUT = "30s"
ATTEMPT_RETRIES = 3
BATCH_LIMIT = 100  # messages per /v2/batch request
MAX_WAIT_SECONDS = 2.0  # one wait between tries; the whole budget is a few seconds


@dataclass(frozen=True, slots=True)
class PublishConfig:
    qstash_url: str
    token: str
    base_url: str
    label: str
    budget_seconds: float = 4.0

    @property
    def destination(self) -> str:
        return self.base_url + CONSUMER_PATH

    @property
    def failure_callback(self) -> str:
        return self.base_url + FAILURE_PATH


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    deduplicated: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """QStash refused this message for good (a 4xx other than 429)."""

    reason: str


Outcome = Accepted | Refused | None


class QStashUnavailable(Exception):
    """Worth another try: transport error, 5xx, 429, or an answer we cannot read."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_backoff = wait_exponential_jitter(multiplier=0.05, max=1.0)


def _wait(state: RetryCallState) -> float:
    """QStash's own hint when it gave one (Retry-After, rate-limit reset), else backoff."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, QStashUnavailable) and exc.retry_after is not None:
        return min(max(exc.retry_after, 0.0), MAX_WAIT_SECONDS)
    return float(_backoff(state))


class QStashPublisher:
    def __init__(self, poster: Poster, config: PublishConfig) -> None:
        self._poster = poster
        self._config = config
        self._url = config.qstash_url.rstrip("/") + "/v2/batch"
        self._headers = {
            "Authorization": f"Bearer {config.token}",
            "Content-Type": "application/json",
        }
        self.template: dict[str, str] = _template(config)

    async def aclose(self) -> None:
        await self._poster.aclose()

    async def publish(self, body: str, count: int) -> list[Outcome]:
        """Send one `/v2/batch` body of `count` messages (at most `BATCH_LIMIT`), as built
        from `template`; one outcome per message, in order."""
        if not count:
            return []
        assert count <= BATCH_LIMIT
        try:
            async with asyncio.timeout(self._config.budget_seconds):
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type((QStashUnavailable, NoReply)),
                    wait=_wait,
                    reraise=True,
                ):
                    with attempt:
                        return await self._send(body, count)
        except (TimeoutError, QStashUnavailable, NoReply) as exc:
            log.warning("qstash_publish_failed", events=count, error=repr(exc)[:200])
        return [None] * count

    async def _send(self, body: str, count: int) -> list[Outcome]:
        response = await self._poster.post(self._url, body, self._headers)
        status = response.status
        if status == 429 or status >= 500:
            raise QStashUnavailable(f"QStash answered {status}", retry_after=_hint(response))
        if status >= 400:
            reason = f"QStash answered {status}: {response.text[:200]}"
            log.error("qstash_refused_batch", status=status, events=count)
            return [Refused(reason)] * count
        try:
            answer = response.json()
        except ValueError:
            raise QStashUnavailable(f"QStash answered {status}, not with JSON") from None
        if not isinstance(answer, list) or len(answer) != count:
            raise QStashUnavailable(f"QStash answered {status} with an unexpected body")
        return [_outcome(item) for item in answer]


def _template(config: PublishConfig) -> dict[str, str]:
    """How the ledger writes each `/v2/batch` item: `prefix + JSON(dedup ID) + middle +
    JSON(event) + suffix`. Destination and headers are spelled by qstash-py itself
    (`prepare_batch_message_body`), with the dedup ID header last."""
    request: BatchRequest = {
        "url": config.destination,
        "content_type": "application/json",
        "retries": ATTEMPT_RETRIES,
        "timeout": ATTEMPT_TIMEOUT,
        "failure_callback": config.failure_callback,
        "label": config.label,
    }
    (item,) = json.loads(prepare_batch_message_body([request]))
    headers = {**item["headers"], "Upstash-Deduplication-Id": None}
    head = json.dumps({"destination": item["destination"], "headers": headers})
    assert head.endswith("null}}")
    return {"prefix": head.removesuffix("null}}"), "middle": '}, "body": ', "suffix": "}"}


def _outcome(item: Any) -> Outcome:
    if isinstance(item, dict) and isinstance(item.get("messageId"), str):
        return Accepted(item["messageId"], deduplicated=item.get("deduplicated") is True)
    if isinstance(item, dict) and "error" in item:
        return Refused(f"QStash refused the message: {str(item['error'])[:200]}")
    return None  # unreadable: try again under the same dedup ID, or store directly


def _hint(response: Reply) -> float | None:
    """Seconds to wait per `Retry-After` (seconds or an HTTP date) or QStash's
    `Burst-RateLimit-Reset` / `RateLimit-Reset` (epoch seconds, or seconds)."""
    retry_after = response.headers.get("retry-after")
    if retry_after:
        try:
            return float(retry_after)
        except ValueError:
            try:
                return email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time()
            except (ValueError, TypeError):
                pass
    for name in ("burst-ratelimit-reset", "ratelimit-reset"):
        value = response.headers.get(name)
        if value:
            try:
                reset = float(value)
            except ValueError:
                continue
            return reset - time.time() if reset > 1e9 else reset
    return None
