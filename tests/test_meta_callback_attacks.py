"""Meta's deauthorize and data-deletion callbacks under attack (issue 23, items 1, 2, 7, 8).

One signed request is one request however a copy of it is spelled; a stranger's body never
reaches the JSON parser; a replayed disconnection after a reconnect changes nothing; what
can never succeed is answered 400 or 404, not "try again later".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx

from storage.postgres import PostgresBackend
from tests.conftest import META_SECRET, wait_settled
from tests.meta import post
from tests.privacy_kit import ACCOUNT, CUSTOMER, callback, message, request_for, signed_request

DELETION, DEAUTHORIZE = "/api/meta/data-deletion", "/api/meta/deauthorize"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sign(payload_b64: str, secret: str = META_SECRET) -> str:
    return _b64(hmac.new(secret.encode(), payload_b64.encode(), hashlib.sha256).digest())


def a_request_with_url_safe_characters(user_id: str) -> str:
    """A valid request whose signature has a `-` or `_`, so that `+/` spells it differently."""
    for back in range(200):
        value = signed_request(request_for(user_id, issued_at=int(time.time()) - back))
        if "-" in value.split(".")[0] or "_" in value.split(".")[0]:
            return value
    raise AssertionError("no signature with - or _ in 200 tries")  # pragma: no cover


def respellings(value: str) -> dict[str, str]:
    """The same signed request, re-encoded the ways a lenient base64 decoder accepts."""
    signature, payload = value.split(".")
    last = signature[-1]
    spare = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = spare[spare.index(last) ^ 1]  # same 4 high bits: the 2 spare bits differ
    return {
        "padding": signature + "=." + payload,
        "padded payload": signature + "." + payload + "=" * (-len(payload) % 4 or 4),
        "standard alphabet": signature.replace("-", "+").replace("_", "/") + "." + payload,
        "junk character": signature[:10] + "!" + signature[10:] + "." + payload,
        "non-canonical last character": signature[:-1] + sibling + "." + payload,
    }


async def stored_messages(backend: PostgresBackend) -> int:
    count: int = await backend.pool.fetchval("select count(*) from ig_messages")
    return count


# --- item 1: a re-encoded copy of a data-deletion request ----------------------------------


async def test_a_reencoded_deletion_request_erases_nothing(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await backend.call("ig_add_account", {"p_account": ACCOUNT, "p_app_user_id": "app-user-1"})
    await post(client, message("m_before", CUSTOMER, "before the request"))
    await wait_settled(backend)
    value = a_request_with_url_safe_characters("app-user-1")
    first = await callback(client, DELETION, value)
    assert first.status_code == 200, first.text
    assert await stored_messages(backend) == 0
    # The business reconnects; new messages arrive.
    await backend.call("ig_add_account", {"p_account": ACCOUNT, "p_app_user_id": "app-user-1"})
    for n in range(3):
        later = int(time.time() * 1000) + 1000  # newer than the erasure: new data
        await post(client, message(f"m_after_{n}", CUSTOMER, "after the reconnect", ts=later))
    await wait_settled(backend)
    for name, copy in respellings(value).items():
        answer = await callback(client, DELETION, copy)
        assert answer.status_code == 400, name
        assert "base64url" in answer.json()["error"], name
    assert await stored_messages(backend) == 3
    assert await backend.pool.fetchval("select count(*) from ig_deletion_requests") == 1
    again = await callback(client, DELETION, value)  # the request itself, once more
    assert again.json()["confirmation_code"] == first.json()["confirmation_code"]
    assert await stored_messages(backend) == 3


async def test_concurrent_copies_of_one_deletion_request_erase_once(database_url: str) -> None:
    backends = [PostgresBackend(database_url) for _ in range(8)]
    for each in backends:
        await each.open()
    try:
        await backends[0].call("ig_add_account", {"p_account": ACCOUNT, "p_app_user_id": "u-2"})
        args = {"p_request_key": "k" * 64, "p_app_user_id": "u-2"}
        results = await asyncio.gather(
            *(b.call("ig_data_deletion", {**args, "p_code": f"code{n}"}) for n, b in
              enumerate(backends))
        )  # fmt: skip
    finally:
        for each in backends:
            await each.close()
    assert sum(r["new"] for r in results) == 1
    assert len({r["code"] for r in results}) == 1


# --- item 2: parse only what Meta signed -------------------------------------------------------


async def test_a_deeply_nested_payload_is_401_unsigned_and_400_signed(
    client: httpx.AsyncClient,
) -> None:
    payload = _b64(b"[" * 1000 + b"]" * 1000)
    for path in (DELETION, DEAUTHORIZE):
        forged = await callback(client, path, _b64(b"\x00" * 32) + "." + payload)
        assert forged.status_code == 401, path  # refused before any JSON is parsed
        assert forged.json()["error"] == "the signature does not match"
        signed = await callback(client, path, _sign(payload) + "." + payload)
        assert signed.status_code == 400, path
        assert "JSON" in signed.json()["error"]


# --- item 7: a deauthorize replayed after the business reconnected ----------------------------


async def connected(backend: PostgresBackend) -> bool:
    deauthorized = await backend.pool.fetchval(
        "select deauthorized_at from ig_accounts where account_id = $1", ACCOUNT
    )
    return deauthorized is None


async def test_a_replayed_deauthorize_after_a_reconnect_disconnects_nothing(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await backend.call("ig_add_account", {"p_account": ACCOUNT, "p_app_user_id": "app-user-3"})
    value = signed_request(request_for("app-user-3", issued_at=int(time.time()) - 60))
    older = signed_request(request_for("app-user-3", issued_at=int(time.time()) - 120))
    assert (await callback(client, DEAUTHORIZE, value)).status_code == 200
    assert not await connected(backend)
    await backend.call("ig_add_account", {"p_account": ACCOUNT, "p_app_user_id": "app-user-3"})
    assert await connected(backend)
    for replay in (value, older):  # the same request, and another issued before the reconnect
        assert (await callback(client, DEAUTHORIZE, replay)).status_code == 200
        assert await connected(backend)
    fresh = signed_request(request_for("app-user-3", issued_at=int(time.time()) + 2))
    assert (await callback(client, DEAUTHORIZE, fresh)).status_code == 200
    assert not await connected(backend)  # a disconnection after the reconnect still counts


# --- item 8: what can never succeed is not "try again later" ---------------------------------


async def test_a_status_code_no_request_could_have_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    for code in ("%00", "%F0%9F%98%80", "a%0Ab", "x" * 65):
        answer = await client.get(f"{DELETION}/{code}")
        assert answer.status_code == 404, code
        assert answer.json()["error"] == "no such data-deletion request"


async def test_a_signed_user_id_the_database_cannot_hold_is_a_bad_request(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    for user_id in ("u\x00ser", "u\ud800ser", "u\x1bser"):  # NUL, a lone surrogate, ESC
        payload = _b64(json.dumps(request_for("x") | {"user_id": user_id}).encode())
        for path in (DELETION, DEAUTHORIZE):
            answer = await callback(client, path, _sign(payload) + "." + payload)
            assert answer.status_code == 400, (path, user_id)
            assert "user_id" in answer.json()["error"]
    assert await backend.pool.fetchval("select count(*) from ig_deletion_requests") == 0
