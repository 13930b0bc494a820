"""Publishing events to QStash with qstash-py, within a budget Meta can wait for.

Every message carries its dedup ID, `Upstash-Timeout: 30s`, `Upstash-Retries: 3`,
our label and the failure callback. qstash-py's own retries are off: they retry
only transport errors, for ~11 s, never 5xx or 429. Ours (tenacity) retry
connect errors, 5xx and 429 (honouring Retry-After) inside `budget_seconds` in all.

Two qstash-py 3.4 gaps are worked around here, on purpose and in one place:
- `batch_json` drops `label` (its `convert_to_batch_messages` does not copy it), so
  batches are built as `BatchRequest`s and serialised by qstash-py's own
  `prepare_batch_message_body`, which does honour it;
- `parse_batch_response` raises `KeyError` on an error item and loses the others,
  so batch answers are read item by item: the items QStash accepted are
  published, the others go back to the producer's fallback.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from qstash import AsyncQStash
from qstash.errors import QStashError, RateLimitExceededError
from qstash.message import BatchRequest, PublishResponse, prepare_batch_message_body
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contracts import Event
from ingest.coalesce import Coalescer

log = structlog.get_logger(__name__)

CONSUMER_PATH = "/api/qstash/instagram-ingestion"
FAILURE_PATH = "/api/qstash/failures"
ATTEMPT_TIMEOUT = "30s"
ATTEMPT_RETRIES = 3
BATCH_LIMIT = 100  # messages per /v2/batch request; larger deliveries take several
_STATUS = re.compile(r"status: (\d{3})")


@dataclass(frozen=True, slots=True)
class PublishConfig:
    base_url: str
    label: str
    budget_seconds: float = 4.0

    @property
    def destination(self) -> str:
        return self.base_url + CONSUMER_PATH

    @property
    def failure_callback(self) -> str:
        return self.base_url + FAILURE_PATH


def _status_of(exc: BaseException) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def is_retryable(exc: BaseException) -> bool:
    """Transport errors, 429 and 5xx are worth another try; other 4xx never are."""
    if isinstance(exc, httpx.TransportError | RateLimitExceededError):
        return True
    if isinstance(exc, QStashError):
        status = _status_of(exc)
        return status is not None and status >= 500
    return False


_backoff = wait_exponential_jitter(multiplier=0.1, max=1.0)


def _wait(state: RetryCallState) -> float:
    """Honour QStash's rate-limit reset (epoch seconds) when given; else jittered backoff.

    Capped at 2 s: the whole budget is a few seconds, after which we fall back."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, RateLimitExceededError) and exc.reset:
        try:
            reset = float(exc.reset)
        except ValueError:
            reset = 0.0
        delay = reset - time.time() if reset > 1e9 else reset
        return min(max(delay, 0.0), 2.0)
    return float(_backoff(state))


class QStashPublisher:
    """Implements `ingest.producer.Publisher`."""

    def __init__(self, client: AsyncQStash, config: PublishConfig) -> None:
        self._client = client
        self._config = config

    def _request(self, event: Event) -> BatchRequest:
        return {
            "url": self._config.destination,
            "body": event.model_dump_json(),
            "content_type": "application/json",
            "deduplication_id": event.dedup_id,
            "retries": ATTEMPT_RETRIES,
            "timeout": ATTEMPT_TIMEOUT,
            "failure_callback": self._config.failure_callback,
            "label": self._config.label,
        }

    async def publish(self, events: Sequence[Event]) -> dict[str, str]:
        """Return {dedup_id: message_id} for the events QStash took; {} when it took none."""
        if not events:
            return {}
        try:
            async with asyncio.timeout(self._config.budget_seconds):
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(is_retryable),
                    wait=_wait,
                    stop=stop_after_attempt(4),
                    reraise=True,
                ):
                    with attempt:
                        if len(events) == 1:
                            return await self._publish_one(events[0])
                        return await self._publish_batch(events)
        except (TimeoutError, QStashError, httpx.HTTPError) as exc:
            log.warning(
                "qstash_publish_failed",
                events=len(events),
                status=_status_of(exc),
                error=type(exc).__name__,
            )
        return {}

    async def _publish_one(self, event: Event) -> dict[str, str]:
        response = await self._client.message.publish_json(
            url=self._config.destination,
            body=event.model_dump(mode="json"),
            deduplication_id=event.dedup_id,
            retries=ATTEMPT_RETRIES,
            timeout=ATTEMPT_TIMEOUT,
            failure_callback=self._config.failure_callback,
            label=self._config.label,
        )
        assert isinstance(response, PublishResponse)  # a URL destination, not a URL group
        return {event.dedup_id: response.message_id}

    async def _publish_batch(self, events: Sequence[Event]) -> dict[str, str]:
        published: dict[str, str] = {}
        for start in range(0, len(events), BATCH_LIMIT):
            published |= await self._publish_chunk(events[start : start + BATCH_LIMIT])
        return published

    async def _publish_chunk(self, events: Sequence[Event]) -> dict[str, str]:
        body = prepare_batch_message_body([self._request(event) for event in events])
        answer: list[Any] = await self._client.http.request(
            path="/v2/batch",
            method="POST",
            headers={"Content-Type": "application/json"},
            body=body,
        )
        published: dict[str, str] = {}
        for event, item in zip(events, answer, strict=False):
            if isinstance(item, dict) and isinstance(item.get("messageId"), str):
                published[event.dedup_id] = item["messageId"]
            else:
                log.warning("qstash_batch_item_refused", dedup_id=event.dedup_id, answer=item)
        return published

    async def aclose(self) -> None:
        """qstash-py owns an httpx client of its own; close it with the app."""
        await self._client.http._client.aclose()


class CoalescingPublisher:
    """Concurrent deliveries share QStash calls (see `ingest.coalesce`).

    Each caller gets back only its own events' outcomes, so the producer's fallback
    still works per event.
    """

    def __init__(self, inner: QStashPublisher, *, max_batch: int = BATCH_LIMIT) -> None:
        self._inner = inner
        self._coalescer: Coalescer[Event, str | None] = Coalescer(self._call, max_items=max_batch)

    async def _call(self, events: list[Event]) -> list[str | None]:
        published = await self._inner.publish(events)
        return [published.get(event.dedup_id) for event in events]

    async def publish(self, events: Sequence[Event]) -> dict[str, str]:
        message_ids = await self._coalescer.submit(events)
        return {e.dedup_id: m for e, m in zip(events, message_ids, strict=True) if m is not None}

    async def aclose(self) -> None:
        await self._inner.aclose()
