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
- Or, with `deliver_with(key)`, it delivers what it accepts as QStash does: to the
  destination (through `hosts`, public base URL → where the test serves it), signed
  (`Upstash-Signature`, `sub` = destination), `Upstash-Forward-*` headers forwarded
  without the prefix, `Upstash-Message-Id` and `Upstash-Retried`; every non-2xx is
  retried `Upstash-Retries` times after `Upstash-Retry-Delay` (its expression in
  `retried`, scaled by `time_scale`), 489 + `Upstash-NonRetryable-Error` not at all;
  then the failure callback is called, signed, with QStash's body. `deliveries`
  records every attempt.

It runs as a real server (uvicorn on 127.0.0.1) because qstash-py builds its own
httpx client; `tests/test_qstash_double.py` proves it against `qstash.AsyncQStash`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
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
class Attempt:
    """One delivery attempt the double made, and the destination's status (0: unreachable)."""

    message_id: str
    destination: str
    status: int
    retried: int
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
    signing_key: str | None = None  # set: deliver what is accepted (deliver_with)
    hosts: dict[str, Any] = field(default_factory=dict)  # public → base URL, or a list
    time_scale: float = 0.001
    deliveries: list[Attempt] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    _dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _generation: int = 0
    _http: httpx.AsyncClient | None = None

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
        self.signing_key = None
        self.hosts.clear()
        self.time_scale = 0.001
        self.deliveries.clear()
        self.callbacks.clear()

    def deliver_with(
        self, key: str, hosts: dict[str, Any] | None = None, time_scale: float = 0.001
    ) -> None:
        """Deliver every message accepted from now on, signed with `key`."""
        self.signing_key = key
        self.hosts.update(hosts or {})
        self.time_scale = time_scale

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
        if self.signing_key is not None:
            asyncio.get_running_loop().create_task(self._deliver(published, self._generation))
        return {"messageId": message_id}, 201

    # -- delivering, as QStash does ----------------------------------------------------

    def _route(self, url: str) -> str:
        """Where `url` really listens; a list of places is a round-robin balancer."""
        for public, local in self.hosts.items():
            if url.startswith(public):
                if isinstance(local, list):
                    local.append(local.pop(0))
                    local = local[-1]
                return local + url.removeprefix(public)
        return url

    def _client(self) -> httpx.AsyncClient:
        """One client for every delivery (in the double's own event loop), as QStash keeps
        connections to a destination open."""
        if self._http is None or self._http.is_closed:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            self._http = httpx.AsyncClient(timeout=10, limits=limits)
        return self._http

    async def _deliver(self, published: Published, generation: int) -> None:
        from tests.doubles.qstash_signer import sign

        assert self.signing_key is not None
        key = self.signing_key
        sent = published.headers
        retries = int(sent.get("upstash-retries", "3"))
        forwarded = {
            name.removeprefix("upstash-forward-"): value
            for name, value in sent.items()
            if name.startswith("upstash-forward-")
        }
        last: httpx.Response | None = None
        http = self._client()
        for retried in range(retries + 1):
            if generation != self._generation:
                return
            headers = {
                "content-type": sent.get("content-type", "application/json"),
                **forwarded,
                "upstash-message-id": published.message_id,
                "upstash-retried": str(retried),
                "upstash-signature": sign(published.body, published.destination, key),
            }
            try:
                last = await http.post(
                    self._route(published.destination), content=published.body,
                    headers=headers,
                )  # fmt: skip
                status = last.status_code
            except httpx.HTTPError:
                last, status = None, 0
            self.deliveries.append(Attempt(published.message_id, published.destination,
                                           status, retried, headers, published.body))  # fmt: skip
            if 200 <= status < 300:
                return
            if (
                status == 489
                and last is not None
                and last.headers.get("upstash-nonretryable-error") == "true"
            ):
                break
            if retried < retries:
                await asyncio.sleep(self._retry_delay(sent, retried) * self.time_scale)
        await self._fail(http, published, last, retried, retries, key)

    def _retry_delay(self, headers: dict[str, str], retried: int) -> float:
        """Seconds before the next attempt: `Upstash-Retry-Delay` (milliseconds, an
        expression in `retried`), else QStash's default min(86400, e^(2.5·n))."""
        expression = headers.get("upstash-retry-delay")
        if expression:
            allowed = {"pow": pow, "min": min, "max": max, "abs": abs, "retried": retried}
            return float(eval(expression, {"__builtins__": {}}, allowed)) / 1000
        return float(min(86400.0, math.exp(2.5 * (retried + 1))))

    async def _fail(
        self,
        http: httpx.AsyncClient,
        published: Published,
        last: httpx.Response | None,
        retried: int,
        retries: int,
        key: str,
    ) -> None:
        from tests.doubles.qstash_signer import sign

        callback_url = published.headers.get("upstash-failure-callback")
        if not callback_url:
            return
        callback = {
            "status": last.status_code if last is not None else 0,
            "header": dict(last.headers) if last is not None else {},
            "body": base64.b64encode(last.content if last is not None else b"").decode(),
            "retried": retried,
            "maxRetries": retries,
            "dlqId": f"dlq_{published.message_id}",
            "sourceMessageId": published.message_id,
            "topicName": "",
            "endpointName": "",
            "url": published.destination,
            "method": "POST",
            "sourceHeader": {k: [v] for k, v in published.headers.items()},
            "sourceBody": base64.b64encode(published.body).decode(),
            "notBefore": 0,
            "createdAt": int(self.clock() * 1000),
            "scheduleId": "",
            "callerIP": "127.0.0.1",
        }
        body = json.dumps(callback).encode()
        self.callbacks.append(callback)
        await http.post(
            self._route(callback_url),
            content=body,
            headers={
                "content-type": "application/json",
                "upstash-signature": sign(body, callback_url, key),
            },
        )


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
