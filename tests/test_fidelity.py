"""What real deliveries carry, stored the way a business reads it (issue 14).

Each test sends one fixture (its source is in the file's `_source`) through the whole
flow on real PostgreSQL and reads the rows it produced.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from storage.postgres import PostgresBackend
from tests.conftest import wait_settled
from tests.meta import fixture, post, text_message, wire_bytes


async def send(client: httpx.AsyncClient, backend: PostgresBackend, *names: str) -> None:
    for name in names:
        assert (await post(client, wire_bytes(fixture(name)))).status_code == 200
        await wait_settled(backend)


async def rows(backend: PostgresBackend, sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await backend.pool.fetch(sql)]


async def test_1_changes_are_dated_from_seconds(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "comment_on_ad_seconds", "story_insights_seconds")
    dated = await rows(backend, "select field, occurred_at from ig_events order by field")
    assert [(r["field"], r["occurred_at"].year) for r in dated] == [
        ("comments", 2023), ("story_insights", 2019),
    ]  # fmt: skip
    assert dated[0]["occurred_at"] == dt.datetime.fromtimestamp(1701284314, dt.UTC)


async def test_2_dashboard_tests_are_test_events_never_customer_data(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(
        client, backend, "dashboard_test_messages_changes", "dashboard_test_messages_messaging"
    )
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 0
    assert await backend.pool.fetchval("select count(*) from ig_profiles") == 0
    tests = await rows(backend, "select is_test, field, account_id from ig_events")
    assert tests and all(r["is_test"] and r["account_id"] == "0" for r in tests)


async def test_3_one_attachment_per_shared_thing_with_its_ids(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "share_and_ig_post_same_post", "ig_story_share", "ig_reel_share")
    found = await rows(
        backend,
        "select type, url, media_id, reel_id, story_id, title from ig_attachments order by type",
    )
    assert [r["type"] for r in found] == ["ig_post", "ig_reel", "ig_story"]
    post_, reel, story = found
    assert post_["media_id"] and post_["url"] and post_["title"] is not None
    assert reel["reel_id"] and reel["url"] and reel["title"]
    assert story["story_id"] and story["url"]  # the story media URL: a story share has no url


async def test_4_the_ad_or_product_that_started_the_conversation(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "referral_in_message_ad", "referral_in_message_product")
    found = await rows(
        backend,
        "select referral_source, referral_type, referral_ad_id, referral_product_id,"
        " referral_context from ig_messages order by referral_ad_id nulls last",
    )
    ad, product = found
    assert (ad["referral_source"], ad["referral_type"]) == ("ADS", "OPEN_THREAD")
    assert ad["referral_ad_id"] and "ad_title" in ad["referral_context"]
    assert product["referral_product_id"]


async def test_5_edits_as_numbers_or_strings_and_an_empty_edit_marks_nothing(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "edit_num_edit_string", "edit_num_edit_zero_no_text")
    edited = await rows(
        backend, "select mid, edit_count, edited_at, is_placeholder from ig_messages"
    )
    assert [(r["edit_count"], r["edited_at"] is not None) for r in edited] == [(1, True)]
    # num_edit 0 and no text, before its message: kept as an event, the message untouched
    zero = fixture("edit_num_edit_zero_no_text")["entry"][0]["messaging"][0]
    assert (
        await backend.pool.fetchval(
            "select count(*) from ig_events where kind = 'message_edit' and mid = $1",
            zero["message_edit"]["mid"],
        )
        == 1
    )
    await post(client, text_message(zero["message_edit"]["mid"], text="the original"))
    await wait_settled(backend)
    message = await backend.pool.fetchrow(
        "select text, edit_count, edited_at from ig_messages where mid = $1",
        zero["message_edit"]["mid"],
    )
    assert message is not None
    assert (message["text"], message["edit_count"], message["edited_at"]) == (
        "the original",
        0,
        None,
    )


async def test_6_self_messages_and_standby_are_recorded_and_the_account_is_no_customer(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "self_message_echo", "standby_message")
    found = await rows(
        backend, "select is_self, via_standby, direction from ig_messages order by is_self"
    )
    assert [(r["is_self"], r["via_standby"]) for r in found] == [(False, True), (True, False)]
    echo = fixture("self_message_echo")["entry"][0]["messaging"][0]
    profiles = {r["igsid"] for r in await rows(backend, "select igsid from ig_profiles")}
    assert echo["recipient"]["id"] not in profiles  # the account's own IGSID
    assert echo["sender"]["id"] not in profiles


async def test_7_entry_shapes_that_used_to_vanish_are_stored(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "entry_field_value_comment", "changed_fields_entry")
    found = await rows(backend, "select kind, field from ig_events order by kind")
    assert [r["kind"] for r in found] == ["change", "unsupported"]
    assert found[0]["field"] == "comments"


async def test_8_a_messenger_dm_says_so_on_every_row(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await send(client, backend, "messenger_page_object", "text_message")
    platforms = await rows(
        backend, "select platform, count(*) n from ig_messages group by 1 order by 1"
    )
    assert [(r["platform"], r["n"]) for r in platforms] == [("instagram", 1), ("messenger", 1)]
