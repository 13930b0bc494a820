"""`POST /api/internal/ingest-event`: other services hand events to the same producer.

Bearer token (`INTERNAL_API_TOKEN`, constant-time); with no token configured every
call is refused. The body is one contract event or a JSON list of them; the dedup
ID is always recomputed from the event, never taken from the caller.
"""

from __future__ import annotations

import hmac

import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts import EVENT_ADAPTER, EVENT_LIST_ADAPTER, Event
from contracts.http import BodyTooLarge, answer, is_json_content_type, read_body
from ingest.config.settings import Settings
from ingest.delivery.acceptance import EventSink, hand_over
from ingest.edge import safe_json

PATH = "/api/internal/ingest-event"
MAX_EVENTS = 1000
_UNHOLDABLE = (
    "values no contract event can hold: an integer beyond 18 digits, NaN or Infinity, "
    "or nesting beyond 256 levels"
)

log = structlog.get_logger(__name__)


def routes(settings: Settings, sink: EventSink) -> list[BaseRoute]:
    token = settings.internal_api_token
    expected = f"Bearer {token.reveal()}".encode() if token else None

    async def ingest_event(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if expected is None or not hmac.compare_digest(given, expected):
            return answer(401, "unauthorized", "missing or wrong bearer token")
        if not is_json_content_type(request.headers.get("content-type")):
            return answer(415, "unsupported_media_type", "Content-Type must be application/json")
        try:
            body = await read_body(request, settings.max_body_bytes)
            payload = safe_json.loads(body).value
        except BodyTooLarge as exc:
            return answer(413, "too_large", str(exc))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError included
            return answer(400, "bad_request", "body is not valid JSON")
        if safe_json.has_marks(payload):
            return answer(422, "invalid", _UNHOLDABLE)
        try:
            events = _events(payload)
        except ValidationError as exc:
            return answer(422, "invalid", "not contract events", details=_summary(exc))
        except ValueError as exc:
            return answer(422, "invalid", str(exc))
        return await hand_over(sink, events, caller="internal")

    return [Route(PATH, ingest_event, methods=["POST"])]


def _events(payload: object) -> list[Event]:
    if isinstance(payload, list):
        if len(payload) > MAX_EVENTS:
            raise ValueError(f"at most {MAX_EVENTS} events per call")
        return EVENT_LIST_ADAPTER.validate_python(payload)
    return [EVENT_ADAPTER.validate_python(payload)]


def _summary(exc: ValidationError) -> list[dict[str, str]]:
    """Where and what, without echoing the input back (it may hold message text)."""
    return [
        {"loc": ".".join(str(part) for part in error["loc"]), "msg": error["msg"]}
        for error in exc.errors()[:10]
    ]
