"""QStash's dead-letter queue, filtered by our label: `ingestctl dlq …` and the console.

Plain REST over the app's HTTP client (qstash-py has no retry call): `GET
/v2/dlq?label=…` lists, `POST /v2/dlq/retry/{dlqId}` redrives
(https://upstash.com/docs/qstash/api/dlq/listMessages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ingest.config.settings import Settings
from ingest.ops import audit
from storage import Backend


class DlqError(Exception):
    """QStash refused the call or could not be reached; the message says which."""


# What a DLQ id may be before it goes into a path (QStash's look like `1725323658779-0`):
# an id of dots only would be resolved away and turn `POST /v2/dlq/retry/{id}` into the
# bulk retry of every dead letter in the account.
DLQ_ID = re.compile(r"(?!\.+$)[A-Za-z0-9_.:~-]{1,128}")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dlq_id: str
    message_id: str | None
    status: int | None
    url: str | None
    created_at: int | None
    """Milliseconds since the epoch, as QStash gives it."""

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> DeadLetter:
        return cls(
            dlq_id=str(item["dlqId"]),
            message_id=item.get("messageId"),
            status=item.get("responseStatus"),
            url=item.get("url"),
            created_at=item.get("createdAt"),
        )


@dataclass(frozen=True, slots=True)
class Dlq:
    """The DLQ of one QStash account, as our label sees it."""

    http: httpx.AsyncClient
    base_url: str
    token: str
    label: str

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient) -> Dlq | None:
        """None without `QSTASH_TOKEN`: events are then never published, so no DLQ."""
        if settings.qstash_token is None:
            return None
        return cls(http, settings.qstash_url, settings.qstash_token.reveal(), settings.qstash_label)

    async def list(self) -> list[DeadLetter]:
        answer = await self._call("GET", "/v2/dlq", params={"label": self.label})
        return [DeadLetter.from_api(item) for item in answer.get("messages") or []]

    async def redrive(self, backend: Backend, actor: audit.Actor, dlq_id: str) -> str:
        """Deliver a dead letter again; returns QStash's new message ID."""
        if not DLQ_ID.fullmatch(dlq_id):
            raise DlqError("not a QStash DLQ id (1 to 128 letters, digits, '-', '_', '.', ':')")
        detail = {"dlq_id": dlq_id}
        try:
            answer = await self._call("POST", f"/v2/dlq/retry/{quote(dlq_id, safe='')}")
        except DlqError as exc:
            await audit.record(backend, actor, "dlq.redrive", detail, outcome=str(exc)[:300])
            raise
        message_id = str(answer.get("messageId"))
        await audit.record(backend, actor, "dlq.redrive", {**detail, "message_id": message_id})
        return message_id

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = await self.http.request(
                method, self.base_url + path, headers=headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise DlqError(f"QStash unreachable: {type(exc).__name__}") from exc
        if not response.is_success:
            raise DlqError(f"QStash refused: {response.status_code} {response.text[:200]}")
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise DlqError("QStash answered something that is not JSON") from exc
        return body
