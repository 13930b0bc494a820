"""One JSON-lines log, libraries included, and no token in it (issue 23, item 11).

uvicorn's own lines and tracebacks were plain text among our JSON lines; once library
loggers reach the log, httpx's request lines would carry `access_token` and
`client_secret`. Captured from real streams: a service run as the Procfile runs it, and
`configure_logging` writing to a buffer.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import structlog

from ingest.log_routing import REDACTED
from ingest.logging import configure_logging
from tests.conftest import BASE_ENV
from tests.processes import inherited_env, service

TOKEN, CLIENT_SECRET = "EAAGtoken0123456789", "client-secret-0123456789"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as JSON (a line that is not JSON fails the test, and says so)."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line[:200]!r}")
    return lines


def test_uvicorns_own_lines_are_json_lines_in_the_service_log(
    database_url: str, tmp_path: Path
) -> None:
    env = {**inherited_env(), **BASE_ENV, "DATABASE_URL": database_url, "LOG_LEVEL": "info"}
    log_file = tmp_path / "service.log"
    with log_file.open("wb") as output, service(env, tmp_path, output) as (url, process):
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn's own warning
            sock.recv(1024)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    lines = json_lines(log_file.read_text())
    uvicorn = [line["event"] for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert any(event.startswith("Started server process") for event in uvicorn)
    assert "Invalid HTTP request received." in uvicorn
    assert any(event.startswith("Finished server process") for event in uvicorn)


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """`configure_logging` writing JSON to a buffer; the logging set-up restored after."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("info", json=True, stream=buffer)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers, root.level = handlers, level
        logging.getLogger("httpx").setLevel(logging.NOTSET)


def test_a_library_traceback_is_one_json_line(log_buffer: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:  # uvicorn's own call for an application's exception
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=exc)
    (line,) = json_lines(log_buffer.getvalue())
    assert line["level"] == "error" and line["logger"] == "uvicorn.error"
    assert "Traceback" in line["exception"] and "RuntimeError: boom" in line["exception"]


async def test_no_line_carries_a_token_from_a_url(
    log_buffer: io.StringIO, graph_server: tuple[Any, str]
) -> None:
    _, graph_url = graph_server
    async with httpx.AsyncClient() as client:  # httpx is quiet at INFO by default
        await client.get(f"{graph_url}/me", params={"access_token": TOKEN})
    assert "HTTP Request" not in log_buffer.getvalue()
    logging.getLogger("httpx").setLevel(logging.INFO)  # and when someone turns it up
    async with httpx.AsyncClient() as client:
        await client.get(f"{graph_url}/me", params={"fields": "id", "access_token": TOKEN})
        await client.get(
            f"{graph_url}/oauth/access_token",
            params={"client_id": "1", "client_secret": CLIENT_SECRET, "code": "one-time-code"},
        )
    structlog.get_logger("ingest.test").warning(
        "graph_failed", error=f"Client error for url {graph_url}/me?access_token={TOKEN}"
    )
    text = log_buffer.getvalue()
    lines = json_lines(text)
    assert sum("HTTP Request" in line["event"] for line in lines) == 2
    assert TOKEN not in text and CLIENT_SECRET not in text and "one-time-code" not in text
    assert text.count(REDACTED) == 4  # access_token twice, client_secret, code
    assert "fields=id" in text  # what is not a secret stays readable
