"""A deadline on request bodies: one that has not fully arrived in time ends its request.

Without it, a client trickling a byte every few seconds holds its connection (and a file
descriptor, and a task) for as long as it likes: 200 of them held the service's for a
whole minute. `BodyDeadline` counts from the moment the request's headers arrived; a body
still incomplete `seconds` later is answered `408` with `Connection: close` (uvicorn then
closes the connection), whichever handler was reading it. Header deadlines belong to the
proxy in front: uvicorn has none (README, "Slow clients").

Pure ASGI, on the hot path: per request, one closure and one `asyncio.timeout` around the
first read (a webhook's body is usually there already); nothing once the body is complete.
The timeout is raised as a `BaseException` so that a handler's `except Exception` (which
would answer 500) cannot swallow it on its way back here.
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
        complete = started = False

        async def receive_in_time() -> Message:
            nonlocal complete
            if complete:  # after the body: a wait for the disconnect, not ours to bound
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut from None
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def send_noting(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_noting)
        except BodyTimedOut:
            if started:  # an answer is under way: all we can do is end the connection
                raise
            await send(
                {"type": "http.response.start", "status": 408,
                 "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                             (b"content-length", str(len(self._answer)).encode())]}
            )  # fmt: skip
            await send({"type": "http.response.body", "body": self._answer})
