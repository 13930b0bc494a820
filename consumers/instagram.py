"""QStash-facing endpoints: deliveries and failure callbacks.

Both verify `Upstash-Signature` against the URL we gave QStash, then act; every
outcome, good or bad, is answered through the error table (`consumers.errors`).
Nothing here calls the webhook or publishes anything: a delivery is one-shot, so
no code path can loop.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consumers import signature
from consumers.errors import ContractViolation, MalformedRequest, UnsupportedMediaType, respond
from consumers.processing import Processor
from contracts import event_from_json
from contracts.http import TooDeep, answer, is_json_content_type, loads_bounded, loggable, read_body
from storage import Backend

DELIVERY_PATH = "/api/qstash/instagram-ingestion"
FAILURE_PATH = "/api/qstash/failures"
MAX_CALLBACK_DEPTH = 64  # QStash's callback is 2 levels deep; its decoded body, an event

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """What the consumer needs from the settings; built by the app factory."""

    signing_keys: tuple[str, ...]
    base_url: str
    leeway_seconds: float = 30.0
    permanent_status: int = 489
    max_body_bytes: int = 1024 * 1024

    @property
    def delivery_url(self) -> str:
        return self.base_url + DELIVERY_PATH

    @property
    def failure_url(self) -> str:
        return self.base_url + FAILURE_PATH

    @property
    def destinations(self) -> tuple[str, ...]:
        """Every URL this service has QStash deliver to: a failure callback naming
        another is not about anything we published (`ingest_callback_matches`)."""
        return (self.delivery_url,)


def routes(
    config: ConsumerConfig,
    processor: Processor,
    backend: Backend,
    observe: Callable[[int], None] | None = None,
) -> list[BaseRoute]:
    async def read_signed(request: Request, url: str) -> bytes:
        if not is_json_content_type(request.headers.get("content-type")):
            raise UnsupportedMediaType("Content-Type must be application/json")
        body = await read_body(request, config.max_body_bytes)
        signature.verify(
            request.headers.get(signature.HEADER),
            body,
            keys=config.signing_keys,
            url=url,
            leeway=config.leeway_seconds,
        )
        if not body:
            raise MalformedRequest("empty body")
        return body

    async def deliver(request: Request) -> Response:
        message_id = loggable(request.headers.get("upstash-message-id"))
        retried = loggable(request.headers.get("upstash-retried"), 8)
        try:
            event = event_from_json(await read_signed(request, config.delivery_url))
            outcome = await processor.process(event)
        except Exception as exc:  # every failure is answered through the table
            response = respond(exc, config.permanent_status)
            log.warning(
                "consumer_failed",
                http_status=response.status_code,
                error=type(exc).__name__,
                message_id=message_id,
                retried=retried,
            )
        else:
            response = answer(200, outcome, dedup_id=event.dedup_id)
            log.debug("consumer_stored", outcome=outcome, dedup_id=event.dedup_id, retried=retried)
        if observe is not None:
            observe(response.status_code)
        return response

    async def failed(request: Request) -> Response:
        try:
            body = await read_signed(request, config.failure_url)
            try:
                callback = loads_bounded(body, MAX_CALLBACK_DEPTH)
            except TooDeep as exc:  # retrying cannot make it shallower
                raise ContractViolation(str(exc)) from exc
            except ValueError as exc:
                raise MalformedRequest("callback body is not JSON") from exc
            if not isinstance(callback, dict):
                raise MalformedRequest("callback body is not a JSON object")
            letter = dead_letter(callback, config.destinations)
            result = await backend.call("ig_record_dead_letter", {"p_letter": letter})
        except Exception as exc:
            return respond(exc, config.permanent_status)
        log.error(
            "qstash_dead_letter",
            dlq_id=loggable(callback.get("dlqId")),
            source_message_id=loggable(callback.get("sourceMessageId")),
            last_status=loggable(callback.get("status"), 8),
        )
        return answer(200, "recorded", outcome=result["outcome"])

    return [
        Route(DELIVERY_PATH, deliver, methods=["POST"]),
        Route(FAILURE_PATH, failed, methods=["POST"]),
    ]


def dead_letter(callback: dict[str, Any], destinations: tuple[str, ...] = ()) -> dict[str, Any]:
    """The row we keep for a failure callback (QStash sends its body fields base64-encoded),
    and the URLs we publish to (`ig_record_dead_letter` changes a ledger row only for a
    callback about one of them). One without `dlqId` is known by (`sourceMessageId`,
    `createdAt`); without those either, it cannot be told from its replays: refused."""
    if callback.get("dlqId") is None and (
        not isinstance(callback.get("sourceMessageId"), str) or callback.get("createdAt") is None
    ):
        raise ContractViolation("a failure callback needs dlqId, or sourceMessageId and createdAt")
    return {
        "dlq_id": callback.get("dlqId"),
        "source_message_id": callback.get("sourceMessageId"),
        "last_status": _int(callback.get("status")),
        "retried": _int(callback.get("retried")),
        "url": callback.get("url"),
        "last_response": _decode_text(callback.get("body")),
        "source_body": _decode_json(callback.get("sourceBody")),
        "callback": {k: v for k, v in callback.items() if k not in ("body", "sourceBody")},
        "destinations": list(destinations),
    }


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decode(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def _decode_text(value: object) -> str | None:
    text = _decode(value)
    return None if text is None else text[:2000]


def _decode_json(value: object) -> Any:
    text = _decode(value)
    if text is None:
        return None
    try:
        return loads_bounded(text, MAX_CALLBACK_DEPTH)
    except ValueError:
        return {"undecodable": text[:2000]}
