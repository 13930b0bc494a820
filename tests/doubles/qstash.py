"""An HTTP double of the QStash REST API, as Upstash documents it.

- `POST /v2/publish/{destination}`: 201 `{"messageId"}`; a deduplication ID seen
  within the last 10 minutes answers 202 with the existing ID and
  `"deduplicated": true`; a `:` in the ID is refused with 400.
- `POST /v2/batch`: an array of `{destination, headers, body}` in, an array out in
  the same order; not atomic: an item can fail while the others are sent.
- Programmable trouble: queued whole-request answers (429 with reset headers,
  5xx, a 2xx whose body is not what it should be), per-item batch errors, batches
  that fail while they hold a given dedup ID, a delay before answering.
- Every request is recorded with its headers; the clock is injectable so tests
  can step past the 10-minute window. Accepted messages are kept in `messages`;
  a test delivers them to the consumer itself (signed by the test signer), which
  runs the whole loop Meta → us → QStash → us deterministically.

It runs as a real server (uvicorn on 127.0.0.1) because qstash-py builds its own
httpx client; `tests/test_qstash_double.py` proves it against `qstash.AsyncQStash`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEDUP_WINDOW_SECONDS = 600
TOKEN = "qstash-double-token"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Published:
    message_id: str
    destination: str
    headers: dict[str, str]
    body: bytes


@dataclass
class QStashDouble:
    clock: Callable[[], float] = time.time
    requests: list[Recorded] = field(default_factory=list)
    messages: list[Published] = field(default_factory=list)
    failures: deque[Response] = field(default_factory=deque)
    batch_item_errors: set[int] = field(default_factory=set)
    unavailable_for: set[str] = field(default_factory=set)
    dlq: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    _dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _generation: int = 0

    def reset(self) -> None:
        """Forget everything; a slow request begun before the reset is then ignored."""
        self._generation += 1
        self.requests.clear()
        self.messages.clear()
        self.failures.clear()
        self.batch_item_errors.clear()
        self.unavailable_for.clear()
        self.dlq.clear()
        self._dedup.clear()
        self.delay = 0.0

    # -- programming trouble ---------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            body = {"error": f"programmed failure {status}"}
            self.failures.append(JSONResponse(body, status_code=status, headers=headers))

    def answer_next(self, response: Response, times: int = 1) -> None:
        """Answer the next request(s) with `response`, whatever it is (a 2xx included)."""
        self.failures.extend([response] * times)

    # -- the API ---------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/publish/{destination:path}", self._publish, methods=["POST"]),
                Route("/v2/batch", self._batch, methods=["POST"]),
                Route("/v2/dlq", self._dlq_list, methods=["GET"]),
                Route("/v2/dlq/retry/{dlq_id}", self._dlq_retry, methods=["POST"]),
            ]
        )

    async def _gate(self, request: Request, body: bytes) -> Response | None:
        self.requests.append(Recorded(request.url.path, dict(request.headers), body))
        generation = self._generation
        if self.delay:
            await asyncio.sleep(self.delay)
        if generation != self._generation:
            return JSONResponse({"error": "stale request from an earlier test"}, status_code=503)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if self.failures:
            return self.failures.popleft()
        return None

    async def _publish(self, request: Request) -> Response:
        body = await request.body()
        refused = await self._gate(request, body)
        if refused is not None:
            return refused
        destination = request.url.path.removeprefix("/v2/publish/")
        answer, status = await self._accept(destination, dict(request.headers), body)
        return JSONResponse(answer, status_code=status)

    async def _batch(self, request: Request) -> Response:
        body = await request.body()
        refused = await self._gate(request, body)
        if refused is not None:
            return refused
        items = json.loads(body)
        held = {
            str(item.get("headers", {}).get("Upstash-Deduplication-Id")) for item in items
        } & self.unavailable_for
        if held:
            return JSONResponse({"error": "programmed outage"}, status_code=503)
        answers: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if index in self.batch_item_errors:
                answers.append({"error": "programmed item failure"})
                continue
            headers = {k.lower(): str(v) for k, v in item.get("headers", {}).items()}
            raw = item.get("body") or ""
            answer, _ = await self._accept(item["destination"], headers, raw.encode())
            answers.append(answer)
        return JSONResponse(answers, status_code=200)

    def dead_letter(self, published: Published, label: str, status: int = 500) -> str:
        """Put a message in the DLQ, as QStash does once its retries are exhausted."""
        dlq_id = f"dlq_{len(self.dlq):04d}"
        self.dlq.append(
            {
                "dlqId": dlq_id,
                "messageId": published.message_id,
                "url": published.destination,
                "method": "POST",
                "body": published.body.decode(),
                "maxRetries": 3,
                "notBefore": 0,
                "createdAt": int(self.clock() * 1000),
                "responseStatus": status,
                "label": label,
            }
        )
        return dlq_id

    async def _dlq_list(self, request: Request) -> Response:
        refused = await self._gate(request, b"")
        if refused is not None:
            return refused
        label = request.query_params.get("label")
        messages = [m for m in self.dlq if label is None or m["label"] == label]
        return JSONResponse({"messages": messages})

    async def _dlq_retry(self, request: Request) -> Response:
        refused = await self._gate(request, b"")
        if refused is not None:
            return refused
        dlq_id = request.path_params["dlq_id"]
        found = [m for m in self.dlq if m["dlqId"] == dlq_id]
        if not found:
            return JSONResponse({"error": "dlq message not found"}, status_code=404)
        self.dlq.remove(found[0])
        message_id = f"msg_{next(self._ids):08d}"
        self.messages.append(Published(message_id, found[0]["url"], {}, found[0]["body"].encode()))
        return JSONResponse({"messageId": message_id})

    async def _accept(
        self, destination: str, headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, Any], int]:
        dedup_id = headers.get("upstash-deduplication-id")
        if dedup_id is not None and ":" in dedup_id:
            return {"error": "DeduplicationId cannot contain ':'"}, 400
        now = self.clock()
        if dedup_id is not None and dedup_id in self._dedup:
            message_id, seen = self._dedup[dedup_id]
            if now - seen < DEDUP_WINDOW_SECONDS:
                return {"messageId": message_id, "deduplicated": True}, 202
        message_id = f"msg_{next(self._ids):08d}"
        if dedup_id is not None:
            self._dedup[dedup_id] = (message_id, now)
        published = Published(message_id, destination, headers, body)
        self.messages.append(published)
        return {"messageId": message_id}, 201


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: Any, port: int | None = None, *, lifespan: str = "off") -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("double did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
