"""Request edges a black-box pass found (issue 23, items 9 and 10): trailing-slash
redirects that reflected `Host`; bodies that never finish arriving."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from tests.conftest import BASE_ENV, open_client
from tests.console import CONSOLE_ENV
from tests.processes import inherited_env, service


@pytest.mark.parametrize("path", ["/console/", "/healthz/", "/api/webhooks/instagram/"])
async def test_a_trailing_slash_never_redirects_to_the_host_header(
    make_settings: Callable[..., Settings], path: str
) -> None:
    async for client in open_client(create_app(make_settings(**CONSOLE_ENV))):
        answer = await client.get(path, headers={"Host": "evil.example"})
        assert answer.status_code == 404
        assert "evil.example" not in answer.headers.get("location", "")
        assert "location" not in answer.headers


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
