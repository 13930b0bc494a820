"""QStash's failure callback for turns: `POST /api/qstash/turn-failures`.

QStash calls it once it gives up on a turn (its retries exhausted). The callback is
signed like a delivery (`Upstash-Signature`, `sub` = this URL); the app factory hands in
the consumer's verifier and its error table, so both routes answer failures alike. The
turn is matched by QStash's message id *and* destination (`sourceMessageId`, `url`), as
event callbacks are: a callback for anything else changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts.http import answer, loggable, read_body
from ingest.turns.transport import FAILURE_PATH
from storage import Backend

log = structlog.get_logger(__name__)

Verify = Callable[[str | None, bytes, str], None]
"""Raise unless the `Upstash-Signature` header signs `body` for the URL."""
Refuse = Callable[[Exception], Response]
"""The answer for a failure (signature, shape, database), from the consumer's table."""

MAX_CALLBACK_BYTES = 2 * 1024 * 1024


class MalformedCallback(ValueError):
    pass


def routes(backend: Backend, base_url: str, verify: Verify, refuse: Refuse) -> list[BaseRoute]:
    url = base_url + FAILURE_PATH

    async def failed(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_CALLBACK_BYTES)
            verify(request.headers.get("upstash-signature"), body, url)
            try:
                callback = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise MalformedCallback("callback body is not JSON") from None
            if not isinstance(callback, dict):
                raise MalformedCallback("callback body is not a JSON object")
            status = callback.get("status")
            result = await backend.call(
                "ingest_turn_failed",
                {
                    "p_message_id": str(callback.get("sourceMessageId") or ""),
                    "p_url": str(callback.get("url") or ""),
                    "p_status": status if isinstance(status, int) else None,
                },
            )
        except Exception as exc:
            return refuse(exc)
        log.error(
            "turn_dead_letter",
            turn_id=result.get("turn_id"),
            source_message_id=loggable(callback.get("sourceMessageId")),
            outcome=result["outcome"],
        )
        return answer(200, "recorded", outcome=result["outcome"])

    return [Route(FAILURE_PATH, failed, methods=["POST"])]
