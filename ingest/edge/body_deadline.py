"""A deadline on request bodies: one that has not fully arrived in time ends its request.

Without it, a client trickling a byte every few seconds holds its connection (and a file
descriptor, and a task) for as long as it likes: 200 of them held the service's for a
whole minute. `BodyDeadline` counts from the moment the request's headers arrived; a body
still incomplete `seconds` later is answered `408` with `Connection: close` (uvicorn then
closes the connection), whichever handler was reading it. Header deadlines belong to the
proxy in front: uvicorn has none (README, "Slow clients").

Pure ASGI, and cheap on the hot path: no timer per request. A request is registered only
while it waits for its body (two dict operations around each read until the body is
complete, nothing after); one timer per process, armed only while someone waits, looks
every second (or half the deadline, when shorter) and cancels the reads that are past
their deadline. So a deadline holds to within that tick. The cancellation comes back as
`BodyTimedOut`, a `BaseException`, so that a handler's `except Exception` (which would
answer 500) cannot swallow it on its way back here.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTimedOut(BaseException):
    """The body did not arrive in time; only `BodyDeadline` catches it."""


class BodyDeadline:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._tick_seconds = min(1.0, seconds / 2)
        self._waiting: dict[asyncio.Task[object], float] = {}  # a read under way: its deadline
        self._expired: set[asyncio.Task[object]] = set()
        self._tick_loop: asyncio.AbstractEventLoop | None = None
        self._answer = json.dumps(
            {"status": "timeout",
             "error": f"the request body did not arrive within {seconds:g} s"}
        ).encode()  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def receive_in_time() -> Message:
            nonlocal complete
            if complete:  # after the body: a wait for the disconnect, not ours to bound
                return await receive()
            task = asyncio.current_task()
            assert task is not None
            self._waiting[task] = deadline
            if self._tick_loop is not loop:
                self._tick_loop = loop
                loop.call_later(self._tick_seconds, self._check, loop)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if task not in self._expired:
                    raise
                self._expired.discard(task)
                task.uncancel()
                raise BodyTimedOut from None
            finally:
                del self._waiting[task]
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        try:
            await self.app(scope, receive_in_time, send)
        except BodyTimedOut:
            try:
                await send(
                    {"type": "http.response.start", "status": 408,
                     "headers": [(b"content-type", b"application/json"),
                                 (b"connection", b"close"),
                                 (b"content-length", str(len(self._answer)).encode())]}
                )  # fmt: skip
            except RuntimeError:  # an answer was under way: the server ends the connection
                raise BodyTimedOut from None
            await send({"type": "http.response.body", "body": self._answer})

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the reads past their deadline; look again while anyone is waiting."""
        now = loop.time()
        for task, deadline in self._waiting.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._waiting:
            loop.call_later(self._tick_seconds, self._check, loop)
        else:
            self._tick_loop = None
