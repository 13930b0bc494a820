"""Conversations: the paged, searchable list on the console's page, and one customer's
conversation on its own page (`/console/conversations/{igsid}`).

A conversation page shows the customer's messages in order, each with its text (control
characters written out), its attachments as links (http and https only, the filter
`safe_link`: a URL comes from Meta's payload), its reactions, edits and unsend. Read
with `ingest_conversations_page` and `ingest_conversation` (see the migration
`20261207400000_see_messages.sql`): the rows `ingestctl messages` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ingest.console import reads, turns
from ingest.console.session import Session
from ingest.console.web import Console
from storage import Backend

PAGE = 20
MESSAGES = 500
MAX_SEARCH = 100
MAX_IGSID = 128


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """One page of the conversation list."""

    search: str
    page: int
    total: int
    rows: list[reads.Conversation]

    @property
    def pages(self) -> int:
        return max((self.total + PAGE - 1) // PAGE, 1)


async def page_of(backend: Backend, search: str = "", page: int = 1) -> ConversationPage:
    data = await backend.call(
        "ingest_conversations_page",
        {"p_search": search or None, "p_offset": (page - 1) * PAGE, "p_limit": PAGE},
    )
    rows = [reads.Conversation(**row) for row in data["rows"]]
    return ConversationPage(search, page, int(data["total"]), rows)


def _page_number(value: str | None) -> int | None:
    """`?page=`: absent means 1; anything but a whole number from 1 is None (refused)."""
    if value is None or value == "":
        return 1
    if not value.isdigit() or len(value) > 6 or int(value) < 1:
        return None
    return int(value)


async def listing(console: Console, request: Request, session: Session) -> Response:
    """The list's section (htmx) or the page with it: `?q=` narrows, `?page=` pages."""
    search = (request.query_params.get("q") or "").strip()
    page = _page_number(request.query_params.get("page"))
    error = None
    if len(search) > MAX_SEARCH:
        error = f"a search has at most {MAX_SEARCH} characters"
    elif page is None:
        error = "a page is a whole number from 1"
    if error is not None or page is None:
        refused = {"conversations": None, "conversations_error": error}
        return await console.section(request, session, "_conversations.html", refused, status=422)
    found = await reads.optional(page_of(console.backend, search, page))
    context: dict[str, Any] = {"conversations": found, "conversations_error": None}
    return await console.section(request, session, "_conversations.html", context)


async def conversation(console: Console, request: Request, session: Session) -> Response:
    igsid = request.path_params["igsid"]
    if not 1 <= len(igsid) <= MAX_IGSID or not igsid.isprintable():
        return _not_found(console, request, session, "That is not a customer's id.")
    data: dict[str, Any] | None = await reads.optional(
        console.backend.call("ingest_conversation", {"p_igsid": igsid, "p_limit": MESSAGES})
    )
    if data is None:
        context = {"igsid": igsid, "profile": None, "messages": None, "total": 0, "missing": None}
        return console.render(request, session, "conversation.html", context, status=503)
    if data["profile"] is None and not data["messages"]:
        return _not_found(console, request, session, "No conversation with that customer.")
    context = {
        "igsid": igsid,
        "profile": data["profile"],
        "messages": data["messages"],
        "total": int(data["total"]),
        "missing": None,
        **await turns.context(console, customer=igsid),  # this customer's turns
    }
    return console.render(request, session, "conversation.html", context)


def _not_found(console: Console, request: Request, session: Session, sentence: str) -> Response:
    context: dict[str, Any] = {
        "igsid": None, "profile": None, "messages": [], "total": 0, "missing": sentence,
    }  # fmt: skip
    return console.render(request, session, "conversation.html", context, status=404)
