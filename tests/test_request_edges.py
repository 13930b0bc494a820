"""Request edges a black-box pass found (issue 23, items 9 and 10): trailing-slash
redirects that reflected `Host`; bodies that never finish arriving."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import Message, Receive, Scope, Send

from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.edge.body_deadline import BodyDeadline
from tests.conftest import BASE_ENV, open_client
from tests.console import CONSOLE_ENV
from tests.processes import inherited_env, service


async def test_a_trailing_slash_never_redirects_to_the_host_header(
    make_settings: Callable[..., Settings],
) -> None:
    async for client in open_client(create_app(make_settings(**CONSOLE_ENV))):
        for path in ("/console/", "/healthz/", "/api/webhooks/instagram/"):
            answer = await client.get(path, headers={"Host": "evil.example"})
            assert answer.status_code == 404, path
            assert "location" not in answer.headers, path


def trickle(url: str, seconds: float) -> tuple[bytes, float]:
    """A client that sends its headers, then one body byte every 0.2 s for `seconds`:
    what came back, and when the server closed the connection (from the first byte)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=seconds + 5) as sock:
        sock.sendall(
            b"POST /api/webhooks/instagram HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        started, received = time.monotonic(), b""
        sock.settimeout(0.2)
        while time.monotonic() - started < seconds:
            try:
                sock.sendall(b" ")
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:  # closed
                break
            received += chunk
        return received, time.monotonic() - started


def test_a_body_trickling_past_the_deadline_is_answered_408_and_its_connection_closed(
    database_url: str, tmp_path: Path
) -> None:
    env = {**inherited_env(), **BASE_ENV, "DATABASE_URL": database_url,
           "BODY_TIMEOUT_SECONDS": "1", "LOG_LEVEL": "warning"}  # fmt: skip
    with service(env, tmp_path) as (url, _):
        received, closed_after = trickle(url, seconds=6)
    assert received.startswith(b"HTTP/1.1 408 "), received[:100]
    assert b"did not arrive within 1 s" in received
    assert closed_after < 3  # not the 6 s the client was willing to trickle


async def run_trickled(chunks: int, every: float, deadline: float) -> list[Message]:
    """A handler that reads the whole body inside `except Exception` (as the consumer's
    routes do), behind `BodyDeadline`, fed `chunks` one-byte chunks `every` seconds."""
    sent: list[Message] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while (await receive()).get("more_body"):
                pass
            status = 200
        except Exception:  # must not turn the deadline into a 500
            status = 500
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    remaining = chunks

    async def receive() -> Message:
        nonlocal remaining
        await asyncio.sleep(every)
        remaining -= 1
        return {"type": "http.request", "body": b"x", "more_body": remaining > 0}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await BodyDeadline(handler, deadline)(scope, receive, send)
    return sent


async def test_a_slow_body_that_arrives_in_time_is_read_whole() -> None:
    (start, _) = await run_trickled(chunks=4, every=0.05, deadline=1.0)
    assert start["status"] == 200


async def test_a_body_past_its_deadline_is_408_even_under_a_catch_all_handler() -> None:
    began = time.monotonic()
    (start, body) = await run_trickled(chunks=100, every=0.05, deadline=0.4)
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert b"did not arrive within 0.4 s" in body["body"]
    assert time.monotonic() - began < 1.5  # the deadline plus at most one tick
