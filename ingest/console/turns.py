"""The console's turns section: figures on the home page, a conversation's turns (state,
messages by mid, attempts, why), and replaying held, failed or limited turns.

Its own partial (`_turns.html`) and routes (`/console/turns`, `/console/turns/replay`);
the replay is `ingest.ops.turns.replay`, the same function `ingestctl replay` calls, as
the signed-in operator. Never shows message text: ids, states and counts only.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ingest.console.session import Session
from ingest.console.web import Console, text
from ingest.ops import audit
from ingest.ops import turns as turn_ops
from storage import StorageError

MAX_ID = 64
LATEST = 20


class TurnQueryError(ValueError):
    pass


def checked(customer: str, state: str) -> tuple[str | None, str | None]:
    customer, state = customer.strip(), state.strip()
    if len(customer) > MAX_ID or audit.has_control(customer):
        raise TurnQueryError(f"a customer id is 1 to {MAX_ID} characters, no control characters")
    if state and state not in turn_ops.STATES:
        raise TurnQueryError(f"state is one of {', '.join(turn_ops.STATES)}")
    return customer or None, state or None


async def context(
    console: Console, customer: str | None = None, state: str | None = None, **extra: Any
) -> dict[str, Any]:
    """What `_turns.html` shows; `found` is None when the database is unavailable."""
    try:
        found: dict[str, Any] | None = await turn_ops.listing(
            console.backend, state=state, customer=customer, limit=LATEST
        )
    except StorageError:
        found = None
    query = {"customer": customer or "", "state": state or ""}
    return {"turns": {"found": found, "query": query, "error": None, "result": None, **extra}}


async def view(console: Console, request: Request, session: Session) -> Response:
    params = request.query_params
    try:
        customer, state = checked(params.get("customer", ""), params.get("state", ""))
    except TurnQueryError as exc:
        page = await context(console, error=str(exc))
        return await console.section(request, session, "_turns.html", page, status=422)
    page = await context(console, customer, state)
    return await console.section(request, session, "_turns.html", page)


async def replay(console: Console, request: Request, session: Session, form: FormData) -> Response:
    state = text(form, "state")
    if state not in turn_ops.REPLAYABLE:
        page = await context(console, error=f"replay takes {', '.join(turn_ops.REPLAYABLE)}")
        return await console.section(request, session, "_turns.html", page, status=422)
    assert session.name is not None  # `Console.action` lets only signed-in sessions here
    try:
        count = await turn_ops.replay(
            console.backend, audit.Actor(session.name, "console"), (state,)
        )
    except turn_ops.TurnReplayRefused as exc:
        page = await context(console, error=str(exc).split("\n")[0])
        return await console.section(request, session, "_turns.html", page, status=409)
    page = await context(console, result=f"{count} {state} turn(s) sent again, re-signed.")
    return await console.section(request, session, "_turns.html", page, changed=True)
