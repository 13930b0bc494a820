"""One account's walk: conversations newest first, each one's messages newest first.

The Graph API has no time filter, only cursors (`paging.next`, followed as given; an
empty page may still have one), so the walk stops where times fall below the window:
after a page of conversations all updated before it, or of messages all created before
it (a page is always read to its end: one message listed out of order must not hide
newer ones after it). Paging is bounded: a listing ends after 3 empty pages in a row
(`empty_pages`), and a run makes at most `CALL_BUDGET` calls per account. Only a
conversation's 20 newest messages come with details; older ones are listed bare and a
fetch of one answers "deleted" (9000001, unconfirmed: see `contracts.graph`). They are
counted as `skipped_20_cap` on the page where the cap shows, and the conversation's
older pages are not walked: they would cost calls and recover nothing.

Errors, per object: temporary ones (1, 2, `is_transient`, 5xx, network) are retried
with a smaller page; an unknown field (code 100 naming a field: `reply_to` is
unconfirmed) drops to a plainer field set; anything else skips that conversation or
message and is counted by code. Account-wide errors (`GraphAccountError`: token,
throttling) end the walk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from contracts import MessageEvent
from contracts.graph import GraphApiError
from ingest.delivery.acceptance import EventSink
from ingest.graph.client import GraphClient, object_path
from ingest.graph.messages import graph_seconds, has_details
from ingest.reconcile.fetch import (
    FIELD_SETS,
    FieldLadder,
    JsonObject,
    Tally,
    fetch_message,
    read_message,
)

log = structlog.get_logger(__name__)

CONVERSATIONS_PER_PAGE = 25
MESSAGES_PER_PAGE = 20  # details stop at the 20 newest: a bigger page gains nothing
DETAILED = 20
SMALLEST_PAGE = 2
MAX_PAGES = 500  # per listing: a bound, whatever paging.next does
EMPTY_PAGES_IN_A_ROW = 3  # then a listing ends: cursors that lead nowhere cost calls only
CALL_BUDGET = 5000  # per account and run (42 min at 2/s): the rest waits for the next run


class CallBudgetSpent(Exception):
    """This run made as many Graph calls for the account as it may."""


class Walker:
    def __init__(
        self,
        client: GraphClient,
        account_id: str,
        since: float,
        sink: EventSink,
        *,
        on_conversation: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._account = account_id
        self._since = since
        self._sink = sink
        self._on_conversation = on_conversation
        self._fields = FieldLadder()
        self._calls_left = CALL_BUDGET
        self.tally = Tally()

    async def run(self) -> Tally:
        params = {"platform": "instagram", "fields": "id,updated_time"}
        path = self._client.account.conversations_path
        listing = self._pages(
            lambda n: self._client.get(path, {**params, "limit": str(n)}), CONVERSATIONS_PER_PAGE
        )
        async for conversations in listing:
            recent = [c for c in conversations if self._recent(c.get("updated_time"))]
            for conversation in recent:
                if self._on_conversation is not None:
                    await self._on_conversation()
                await self._conversation(str(conversation.get("id")))
            if conversations and not recent:
                break  # a whole page updated before the window: the rest is older still
        return self.tally

    # --- one conversation ---------------------------------------------------------------

    async def _conversation(self, conversation_id: str) -> None:
        path = object_path(conversation_id)
        if path is None:
            self.tally.errors["invalid_id"] += 1
            return
        for _ in FIELD_SETS:
            tally = Tally(conversations=1)
            try:
                await self._messages(path, tally)
                return
            except GraphApiError as exc:
                if exc.unknown_field and self._fields.plainer():
                    tally = Tally()  # asked again with plainer fields: count it once
                    continue
                tally.errors[exc.label] += 1
                log.warning("reconcile_conversation_skipped", error=exc.label, detail=exc.message)
                return
            finally:  # an account-wide error keeps what was counted so far
                self.tally.add(tally)

    async def _messages(self, path: str, tally: Tally) -> None:
        def first(n: int) -> Awaitable[JsonObject]:
            fields = f"messages.limit({n}){{{self._fields.current}}}"
            return self._client.get(path, {"fields": fields})

        position, capped = 0, False
        async for items in self._pages(first, MESSAGES_PER_PAGE, nested="messages"):
            events: list[MessageEvent] = []
            in_window = 0
            for item in items:
                position += 1  # Meta details the 20 newest listed, in the window or not
                if not self._recent(item.get("created_time")):
                    continue  # listed out of order, maybe: the rest of the page still counts
                in_window += 1
                tally.messages_seen += 1
                if capped or (position > DETAILED and not has_details(item)):
                    capped = True
                    tally.skipped_20_cap += 1
                elif has_details(item):
                    self._build(item, events, tally)
                else:
                    self._build(await self._one(item, tally), events, tally)
            await self._record(events, tally)
            if capped or (items and not in_window):
                return  # a whole page before the window: the rest is older still

    async def _one(self, item: JsonObject, tally: Tally) -> JsonObject | None:
        """A message listed among the 20 newest without details, fetched alone; None
        when Meta will not give it ("deleted": counted with the cap) or fails."""
        self._spend()
        return await fetch_message(self._client, str(item.get("id")), tally, self._fields)

    def _build(self, item: JsonObject | None, events: list[MessageEvent], tally: Tally) -> None:
        if item is not None and (event := read_message(item, self._account, tally)):
            events.append(event)

    async def _record(self, events: list[MessageEvent], tally: Tally) -> None:
        if events:
            acceptance = await self._sink.accept(events)
            tally.recovered += acceptance.new
            tally.already_stored += acceptance.duplicate
            tally.failed += acceptance.failed

    # --- paging -------------------------------------------------------------------------

    async def _pages(
        self,
        first: Callable[[int], Awaitable[JsonObject]],
        limit: int,
        *,
        nested: str | None = None,
    ) -> AsyncIterator[list[JsonObject]]:
        """Each page's items: the first page, then `paging.next` until there is none.
        A temporary error asks the same page again, smaller."""
        next_url: str | None = None
        size, seen, empty = limit, set(), 0
        for _ in range(MAX_PAGES):
            while True:
                self._spend()
                try:
                    if next_url is None:
                        body = await first(size)
                    else:
                        body = await self._client.follow(
                            next_url, limit=None if size == limit else size
                        )
                    break
                except GraphApiError as exc:
                    if not exc.temporary or size <= SMALLEST_PAGE:
                        raise
                    self.tally.errors[exc.label] += 1
                    size = max(SMALLEST_PAGE, size // 2)
            page = body.get(nested, body) if nested else body
            page = page if isinstance(page, dict) else {}
            data = page.get("data")
            items = [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []
            yield items
            paging = page.get("paging")
            next_url = paging.get("next") if isinstance(paging, dict) else None
            if not isinstance(next_url, str) or next_url in seen:
                return
            seen.add(next_url)
            empty = 0 if items else empty + 1
            if empty >= EMPTY_PAGES_IN_A_ROW:  # fresh cursors, nothing behind them
                self.tally.errors["empty_pages"] += 1
                log.warning("reconcile_listing_stopped", reason="empty_pages", pages=empty)
                return

    def _spend(self) -> None:
        """One Graph call of this run's budget; `CallBudgetSpent` when none is left."""
        if self._calls_left <= 0:
            raise CallBudgetSpent(f"the run's budget of {CALL_BUDGET} Graph calls is spent")
        self._calls_left -= 1

    def _recent(self, value: object) -> bool:
        """At or after the window's start; a time Meta did not give counts as recent."""
        seconds = graph_seconds(value)
        return seconds is None or seconds >= self._since
