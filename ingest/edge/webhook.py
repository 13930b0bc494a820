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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts import Event, EventKind
from contracts.http import BodyTooLarge, answer, is_json_content_type, loggable, receive_body
from ingest.config.settings import Settings
from ingest.delivery.acceptance import EventSink, hand_over
from ingest.edge import safe_json, signature
from ingest.edge.parser import is_envelope, parse_delivery
from ingest.metrics import Metrics

PATH = "/api/webhooks/instagram"
_SIGNATURE = signature.HEADER.lower().encode()

log = structlog.get_logger(__name__)


class Webhook:
    """The route's endpoint, pure ASGI: every Meta delivery comes through here.

    No `Request` is built for a POST: the three headers it needs are read from the
    scope in one pass and the body straight from `receive`. `WebhookLane` hands it
    POSTs ahead of the router; Starlette routes the handshake and anything the lane
    does not take (a `root_path` deployment) to the same object.
    """

    def __init__(self, settings: Settings, sink: EventSink, metrics: Metrics | None) -> None:
        self._verify_token = settings.meta_verify_token.reveal().encode()
        self._secrets = settings.meta_app_secrets
        self._max_bytes = settings.max_body_bytes
        self._sink = sink
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "HEAD"):
            response = self.handshake(Request(scope))
        else:
            try:
                response = await self.deliver(scope, receive)
            except ClientDisconnect:  # Meta hung up mid-body: nobody to answer, nothing taken
                log.info("webhook_sender_disconnected")
                return
            if self._metrics is not None:
                self._metrics.observe_webhook_status(response.status_code)
        await response(scope, receive, send)

    def handshake(self, request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token", "").encode()
        challenge = params.get("hub.challenge")
        if (
            params.get("hub.mode") == "subscribe"
            and challenge is not None
            and hmac.compare_digest(token, self._verify_token)
        ):
            log.info("webhook_handshake_accepted")
            # The challenge is reflected input: never let a browser sniff it into HTML.
            return PlainTextResponse(challenge, headers={"X-Content-Type-Options": "nosniff"})
        log.warning("webhook_handshake_refused", mode=loggable(params.get("hub.mode")))
        return answer(403, "forbidden", "verification failed")

    async def deliver(self, scope: Scope, receive: Receive) -> Response:
        content_type, length, signed = _headers(scope)
        if not is_json_content_type(content_type):
            return _reject(415, "unsupported_media_type", "Content-Type must be application/json")
        try:
            body = await receive_body(receive, length, self._max_bytes)
        except BodyTooLarge as exc:
            return _reject(413, "too_large", str(exc))
        try:
            signature.verify(body, signed, self._secrets)
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
        if self._metrics is not None:
            self._metrics.observe_events(events)
        return await hand_over(self._sink, events, caller="meta")


class WebhookLane:
    """Middleware: a POST to the webhook goes straight to its endpoint.

    Meta's deliveries are nearly all of our traffic, and Starlette's exception
    middleware, router and request wrapper cost about a tenth of an acknowledged
    delivery (`bench/README.md`). The lane sits inside the request-id and body-deadline
    middleware, so a delivery gets both; anything else goes on to the router.
    """

    def __init__(self, app: ASGIApp, endpoint: Webhook) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def routes(endpoint: Webhook) -> list[BaseRoute]:
    # One route for both methods, so a 405 lists every allowed method in `Allow`.
    return [Route(PATH, endpoint, methods=["GET", "POST"])]


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Content-Type, Content-Length and the signature (the first of each), in one pass."""
    content_type = length = signed = None
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and length is None:
            length = value.decode("latin-1")
        elif name == _SIGNATURE and signed is None:
            signed = value.decode("latin-1")
    return content_type, length, signed


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
