"""`GET`/`POST /api/webhooks/instagram`: Meta's handshake and event deliveries.

POST checks run cheapest-first and each failure has its own answer: content type
(415), size (413, before hashing), signature on the raw bytes (401), JSON and
envelope shape (400). Only then are events parsed and handed to the sink. Meta
gets 200 only once the sink says every event is durably accepted; anything else
is 503 so that Meta redelivers (duplicates are harmless: the ledger absorbs them).
"""

from __future__ import annotations

import hmac

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import Event, EventKind
from contracts.http import BodyTooLarge, answer, is_json_content_type, loggable, read_body
from ingest.config.settings import Settings
from ingest.delivery.acceptance import EventSink, hand_over
from ingest.edge import safe_json, signature
from ingest.edge.parser import is_envelope, parse_delivery
from ingest.metrics import Metrics

PATH = "/api/webhooks/instagram"

log = structlog.get_logger(__name__)


def routes(settings: Settings, sink: EventSink, metrics: Metrics | None = None) -> list[BaseRoute]:
    verify_token = settings.meta_verify_token.reveal().encode()
    secrets = settings.meta_app_secrets
    max_bytes = settings.max_body_bytes

    async def handshake(request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token", "").encode()
        challenge = params.get("hub.challenge")
        if (
            params.get("hub.mode") == "subscribe"
            and challenge is not None
            and hmac.compare_digest(token, verify_token)
        ):
            log.info("webhook_handshake_accepted")
            # The challenge is reflected input: never let a browser sniff it into HTML.
            return PlainTextResponse(challenge, headers={"X-Content-Type-Options": "nosniff"})
        log.warning("webhook_handshake_refused", mode=loggable(params.get("hub.mode")))
        return answer(403, "forbidden", "verification failed")

    async def deliver(request: Request) -> Response:
        if not is_json_content_type(request.headers.get("content-type")):
            return _reject(415, "unsupported_media_type", "Content-Type must be application/json")
        try:
            body = await read_body(request, max_bytes)
        except BodyTooLarge as exc:
            return _reject(413, "too_large", str(exc))
        try:
            signature.verify(body, request.headers.get(signature.HEADER), secrets)
        except signature.SignatureError as exc:
            return _reject(401, "unauthorized", str(exc))
        try:
            loaded = safe_json.loads(body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError included
            return _reject(400, "bad_request", "body is not valid JSON")
        if not is_envelope(loaded.value):
            return _reject(400, "bad_request", "not a webhook envelope (no entry array)")
        events = parse_delivery(loaded.value, storable=loaded.clean)
        _log_unsupported(events)
        if metrics is not None:
            metrics.observe_events(events)
        return await hand_over(sink, events, caller="meta")

    async def endpoint(request: Request) -> Response:
        # One route for both methods, so a 405 lists every allowed method in `Allow`.
        if request.method in ("GET", "HEAD"):
            return await handshake(request)
        response = await deliver(request)
        if metrics is not None:
            metrics.webhook_deliveries.labels(str(response.status_code)).inc()
        return response

    return [Route(PATH, endpoint, methods=["GET", "POST"])]


def _reject(http_status: int, status: str, error: str) -> Response:
    log.warning("webhook_rejected", http_status=http_status, reason=error)
    return answer(http_status, status, error)


def _log_unsupported(events: list[Event]) -> None:
    """What we kept without understanding it, so that someone can look (keys, not values)."""
    for event in events:
        if event.kind is EventKind.UNSUPPORTED:
            log.info(
                "webhook_unsupported_item",
                field=loggable(getattr(event, "field", None)),
                keys=[loggable(key, 32) for key in sorted(event.raw)[:10]],
                reason=getattr(event, "reason", None),
                dedup_id=loggable(event.dedup_id, 128),
            )
