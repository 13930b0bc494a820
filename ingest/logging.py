"""structlog set-up and the per-request middleware (request id, one summary line).

JSON lines when stdout is not a terminal (what log shippers read), a console
renderer on a terminal; library loggers (uvicorn, httpx, …) render the same way
(`ingest.log_routing`). Request bodies, secrets and message text are never
logged: handlers log identifiers, sizes and outcomes only, and a token-like URL
parameter is redacted from any line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.log_routing import redact_secrets, route_library_logs

REQUEST_ID_HEADER = "x-request-id"


def configure_logging(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """`stream` defaults to stdout; the CLI passes stderr so that its stdout stays data."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            # plain: rich tracebacks print local variables, i.e. message text
            exception_formatter=structlog.dev.plain_traceback
        )
    )
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    route_library_logs(threshold, renderer, stream)  # uvicorn's, httpx's: the same lines


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


SLOW_REQUEST_SECONDS = 1.0


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): binds a request id, logs one line.

    The line is `info` for what an operator must see (a 4xx or 5xx answer, a slow
    request) and `debug` for the rest: a log line costs as much as a quarter of an
    acknowledged webhook, and 200s are counted in the metrics anyway. A 429 is `debug`
    too: it is us refusing a flood, which must not reach the log one line per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("ingest.request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _given_request_id(scope["headers"]) or os.urandom(16).hex()
        header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            emit = (
                self.log.info
                if (status >= 400 and status != 429) or seconds >= SLOW_REQUEST_SECONDS
                else self.log.debug
            )
            emit(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            structlog.contextvars.reset_contextvars(**bound)


def _given_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's `X-Request-Id` when it is one we can log and echo as it is."""
    for name, value in headers:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            return given if _valid_request_id(given) else None
    return None
