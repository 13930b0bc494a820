"""The service describes itself: `/openapi.yaml` is the repository's file as it is, `/docs`
renders every operation in it (on the server, no script), `/` points at both. Public by
default; `API_DOCS=false` takes them away."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from ingest.app import create_app
from ingest.config.settings import Settings, SettingsError
from tests.conftest import open_client

SPEC_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"


async def test_openapi_yaml_is_the_repositorys_file_byte_for_byte(settings: Settings) -> None:
    async for client in open_client(create_app(settings)):
        served = await client.get("/openapi.yaml")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/yaml"
    assert served.content == SPEC_FILE.read_bytes()


async def test_docs_render_every_operation_of_the_file_without_script(settings: Settings) -> None:
    async for client in open_client(create_app(settings)):
        page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "http" not in page.text.split("<body>", 1)[0]
    spec = yaml.safe_load(SPEC_FILE.read_text())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            heading = f"<code>{method.upper()} {html.escape(path)}</code>"
            assert heading in page.text, heading
            summary = html.unescape(page.text.split(heading, 2)[2].split("</p>", 1)[0])
            assert operation["summary"] in summary, path


async def test_the_root_points_at_the_docs(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 200
    assert root.json()["docs"] == "/docs" and root.json()["openapi"] == "/openapi.yaml"


async def test_api_docs_false_takes_all_three_away(make_settings: Callable[..., Settings]) -> None:
    async for client in open_client(create_app(make_settings(API_DOCS="false"))):
        for path in ("/", "/openapi.yaml", "/docs"):
            assert (await client.get(path)).status_code == 404, path


def test_api_docs_takes_true_or_false_only(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="API_DOCS is malformed: expected true or false"):
        make_settings(API_DOCS="maybe")
