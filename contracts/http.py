"""The HTTP side of our contract: the JSON answer shape and bounded body reading.

Every endpoint answers `{"status": <word>, "error": <reason or null>}` (plus
route-specific fields), so a caller can always read why. Both the edge and the
consumer read bodies through `read_body`, which stops at the cap before
buffering more: a 10 GB upload costs us at most `max_bytes`. Small JSON bodies that are
not events (Meta's signed requests, QStash's failure callbacks) are parsed by
`loads_bounded`, which refuses deep nesting before `json` recurses into it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Receive

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class BodyTooLarge(Exception):
    """The request body exceeds the configured cap (answer 413)."""


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class _JsonAnswer(JSONResponse):
    """`JSONResponse`'s bytes from one encoder built once (`json.dumps` with options builds
    a new encoder per call: a tenth of an acknowledged delivery's answer)."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode()


def answer(
    http_status: int,
    status: str,
    error: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    return _JsonAnswer(
        {"status": status, "error": error, **fields}, status_code=http_status, headers=headers
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Read the raw body, refusing more than `max_bytes` (by header first, then by count)."""
    return await receive_body(request.receive, request.headers.get("content-length"), max_bytes)


async def receive_body(receive: Receive, declared: str | None, max_bytes: int) -> bytes:
    """The raw body from ASGI messages, refusing more than `max_bytes`: by the declared
    length before reading a byte, then by count, never buffering past the cap.

    Raises `ClientDisconnect` when the sender hangs up before the body is complete."""
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"body of {declared} bytes exceeds {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body exceeds {max_bytes} bytes")
        if not message.get("more_body", False):
            return b"".join([*chunks, chunk]) if chunks else chunk  # usually one message
        chunks.append(chunk)


def is_json_content_type(value: str | None) -> bool:
    """application/json, with or without parameters (charset)."""
    if not value:
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def loggable(value: object, limit: int = 64) -> str | None:
    """A value taken from a request, bounded for a log line (input never fills the logs)."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


class TooDeep(ValueError):
    """JSON nested deeper than the caller allows: refused before `json` recurses into it."""


def loads_bounded(body: bytes | str, max_depth: int = 32) -> Any:
    """`json.loads`, refusing nesting deeper than `max_depth` with `TooDeep` (a `ValueError`,
    as is anything that is not JSON). The scan runs only when the body has enough brackets
    to be that deep, and is linear: ~1,000 `[` costs a scan, never a `RecursionError`."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if data.count(b"[") + data.count(b"{") > max_depth:
        depth = 0
        for token in _TOKENS.finditer(data):
            char = token.group()[:1]
            if char in (b"[", b"{"):
                depth += 1
                if depth > max_depth:
                    raise TooDeep(f"JSON nested deeper than {max_depth} levels")
            elif char in (b"]", b"}"):
                depth -= 1
    try:
        return json.loads(body)
    except RecursionError:  # what the scan cannot foresee (malformed input)
        raise TooDeep("JSON nested too deeply") from None
