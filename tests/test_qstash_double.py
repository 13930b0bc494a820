"""The QStash double is proven against the official client, qstash-py's AsyncQStash."""

from __future__ import annotations

from typing import Any

import pytest
from qstash import AsyncQStash
from qstash.errors import QStashError

from tests.doubles.qstash import TOKEN


@pytest.fixture
async def client(qstash_server: tuple[Any, str]) -> Any:
    _, url = qstash_server
    client = AsyncQStash(TOKEN, retry=False, base_url=url)
    yield client
    await client.http._client.aclose()


async def test_publish_is_parsed_by_qstash_py(client: AsyncQStash, qstash: Any) -> None:
    response = await client.message.publish_json(
        url="https://x.example/hook", body={"a": 1}, deduplication_id="ig_msg_1",
        retries=3, timeout="30s", label="instagram-messaging-event",
    )  # fmt: skip
    assert response.message_id == qstash.messages[0].message_id
    assert response.deduplicated is False
    (request,) = qstash.requests
    assert request.path == "/v2/publish/https://x.example/hook"
    assert request.headers["upstash-timeout"] == "30s"


async def test_duplicate_within_ten_minutes_is_deduplicated(
    client: AsyncQStash, qstash: Any
) -> None:
    first = await client.message.publish_json(
        url="https://x.example/h", body={}, deduplication_id="d"
    )
    second = await client.message.publish_json(
        url="https://x.example/h", body={}, deduplication_id="d"
    )
    assert second.deduplicated is True
    assert second.message_id == first.message_id
    assert len(qstash.messages) == 1


async def test_dedup_window_is_ten_minutes(client: AsyncQStash, qstash: Any) -> None:
    now = [1_000_000.0]
    qstash.clock = lambda: now[0]
    try:
        await client.message.publish_json(url="https://x.example/h", body={}, deduplication_id="d")
        now[0] += 601
        late = await client.message.publish_json(
            url="https://x.example/h", body={}, deduplication_id="d"
        )
    finally:
        qstash.clock = __import__("time").time
    assert late.deduplicated is False
    assert len(qstash.messages) == 2


async def test_batch_is_parsed_by_qstash_py(client: AsyncQStash, qstash: Any) -> None:
    answers = await client.message.batch_json(
        [
            {"url": "https://x.example/a", "body": {"n": 1}},
            {"url": "https://x.example/b", "body": {"n": 2}},
        ]
    )
    assert [a.message_id for a in answers] == [m.message_id for m in qstash.messages]  # type: ignore[union-attr]


async def test_batch_error_item_breaks_qstash_py_parsing(client: AsyncQStash, qstash: Any) -> None:
    """The documented qstash-py gap our publisher works around."""
    qstash.batch_item_errors.add(0)
    with pytest.raises(KeyError):
        await client.message.batch_json([{"url": "https://x.example/a", "body": {}}] * 2)
    assert len(qstash.messages) == 1  # the other item was sent: batches are not atomic


async def test_colon_in_dedup_id_is_refused(client: AsyncQStash, qstash: Any) -> None:
    with pytest.raises(QStashError, match="400"):
        await client.message.publish_json(
            url="https://x.example/h", body={}, deduplication_id="a:b"
        )


async def test_wrong_token_is_401(qstash_server: tuple[Any, str], qstash: Any) -> None:
    _, url = qstash_server
    client = AsyncQStash("wrong", retry=False, base_url=url)
    with pytest.raises(QStashError, match="401"):
        await client.message.publish_json(url="https://x.example/h", body={})
    await client.http._client.aclose()
