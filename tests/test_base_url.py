"""Where QStash can reach us: PUBLIC_BASE_URL, else ngrok's local API, else localhost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest.config.base_url import ngrok_public_url, resolve_base_url
from ingest.config.settings import Settings
from tests.doubles.qstash import free_port, serve


def ngrok_api(tunnels: list[dict[str, Any]], status: int = 200) -> Starlette:
    """ngrok's local agent API: GET /api/tunnels."""

    async def listing(request: Request) -> Response:
        return JSONResponse({"tunnels": tunnels, "uri": "/api/tunnels"}, status_code=status)

    return Starlette(routes=[Route("/api/tunnels", listing)])


@pytest.fixture
def running_ngrok() -> Iterator[Callable[..., str]]:
    stack: list[Any] = []

    def start(tunnels: list[dict[str, Any]], status: int = 200) -> str:
        context = serve(ngrok_api(tunnels, status))
        stack.append(context)
        return context.__enter__() + "/api/tunnels"

    yield start
    for context in stack:
        context.__exit__(None, None, None)


def test_https_tunnel_is_preferred(running_ngrok: Callable[..., str]) -> None:
    api = running_ngrok(
        [
            {"name": "http", "public_url": "http://abc.ngrok-free.app", "proto": "http"},
            {"name": "https", "public_url": "https://abc.ngrok-free.app/", "proto": "https"},
        ]
    )
    assert ngrok_public_url(api) == "https://abc.ngrok-free.app"


def test_no_ngrok_means_none() -> None:
    assert ngrok_public_url(f"http://127.0.0.1:{free_port()}/api/tunnels") is None


@pytest.mark.parametrize("tunnels", [[], [{"public_url": None}], [{"public_url": "tcp://x:1"}]])
def test_useless_answers_mean_none(running_ngrok: Callable[..., str], tunnels: Any) -> None:
    assert ngrok_public_url(running_ngrok(tunnels)) is None


def test_error_answer_means_none(running_ngrok: Callable[..., str]) -> None:
    assert ngrok_public_url(running_ngrok([], status=502)) is None


def test_public_base_url_wins(
    make_settings: Callable[..., Settings], running_ngrok: Callable[..., str]
) -> None:
    api = running_ngrok([{"public_url": "https://tunnel.example"}])
    assert resolve_base_url(make_settings(), ngrok_api=api) == "https://ingest.example.test"


def test_ngrok_then_localhost(
    make_settings: Callable[..., Settings], running_ngrok: Callable[..., str]
) -> None:
    settings = make_settings(PUBLIC_BASE_URL=None, PORT="8123")
    api = running_ngrok([{"public_url": "https://tunnel.example"}])
    assert resolve_base_url(settings, ngrok_api=api) == "https://tunnel.example"
    missing = f"http://127.0.0.1:{free_port()}/api/tunnels"
    assert resolve_base_url(settings, ngrok_api=missing) == "http://localhost:8123"
