"""An operator's input the database cannot hold is the operator's to fix (issue 23, item 8):
422 with a sentence, never "database unavailable"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from tests.conftest import open_client
from tests.console import CONSOLE_ENV, sign_in


@pytest.fixture
async def console(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(create_app(make_settings(**CONSOLE_ENV))):
        await sign_in(client)
        yield client


FILTERS = {  # what the operator typed → what the 422 says
    "/console/problems?reason=a%00b": "control characters",
    "/console/problems?since=2026-01-01T00:00%00": "control characters",
    "/console/problems?since=0001-01-01T00:00:00%2B05:00": "out of range",  # before year 1 UTC
    "/console/problems?since=9999-12-31T23:59:59-05:00": "out of range",  # after year 9999 UTC
    "/console/lookup?q=m%00id": "without control characters",
}


async def test_a_filter_the_database_cannot_hold_is_unprocessable(
    console: httpx.AsyncClient,
) -> None:
    for query, sentence in FILTERS.items():
        answer = await console.get(query, headers={"HX-Request": "true"})
        assert answer.status_code == 422, query
        assert sentence in answer.text, query
        assert "unavailable" not in answer.text, query
