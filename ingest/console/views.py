"""GET endpoints: the page, the login form, the sections htmx refreshes, static files."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ingest.accounts.registry import Registry
from ingest.console import conversations, reads, turns
from ingest.console import lookup as looking
from ingest.console.charts import spend_chart
from ingest.console.forms import FormError, ProblemQuery, problem_query
from ingest.console.session import Session
from ingest.console.web import Console
from ingest.ops import replay as replaying
from ingest.ops.audit import has_control
from ingest.ops.dlq import DlqError

STATIC = Path(__file__).parent / "static"
# Served by name only: nothing else in the folder (the licence, the checksum) is fetched.
ASSETS = {"htmx.min.js": "text/javascript", "console.css": "text/css"}


async def page_context(console: Console, session: Session) -> dict[str, Any]:
    """Everything the whole page shows, read concurrently; a section whose read failed
    (database unavailable) renders as unavailable. The DLQ loads after the page."""
    backend, query = console.backend, ProblemQuery()
    core = asyncio.gather(
        reads.optional(reads.pulse(backend, console.budget)),
        reads.optional(reads.problems(backend, query.filter)),
        reads.optional(reads.spend(backend)),
        reads.optional(conversations.page_of(backend)),
        reads.optional(reads.audit_trail(backend)),
    )
    extra = asyncio.gather(reads.optional(Registry(backend).overview()), turns.context(console))
    (
        (pulse, problems, spend, found_conversations, audit),
        (accounts, turn_section),
    ) = await asyncio.gather(core, extra)
    return {
        "pulse": pulse,
        "confirm": None,
        "switch_error": None,
        **problems_context(query, problems),
        "dlq": {"loaded": False, "configured": console.dlq is not None},
        "lookup": {"query": "", "paths": None, "error": None},
        "chart": spend_chart(spend, console.budget) if spend is not None else None,
        "qstash_on": console.dlq is not None,  # a DLQ to read means a QSTASH_TOKEN
        "conversations": found_conversations,
        "conversations_error": None,
        "audit": audit,
        **accounts_context(console, accounts),
        **turn_section,
    }


def accounts_context(
    console: Console, accounts: list[dict[str, Any]] | None, link: str | None = None
) -> dict[str, Any]:
    return {"accounts": accounts, "can_connect": console.connect is not None, "connect_link": link}


def problems_context(
    query: ProblemQuery, problems: reads.Problems | None, **extra: Any
) -> dict[str, Any]:
    context = {"query": query, "problems": problems, "preview": None, "result": None}
    return {**context, "problems_error": None, **extra}


async def home(console: Console, request: Request, session: Session) -> Response:
    if not session.signed_in:
        response = console.render(request, session, "login.html", {"error": None})
        console.sessions.attach(response, session)  # the login form's CSRF token needs it
        return response
    page = await page_context(console, session)
    return console.render(request, session, "console.html", page)


async def pulse(console: Console, request: Request, session: Session) -> Response:
    state = await reads.optional(reads.pulse(console.backend, console.budget))
    return console.render(request, session, "_pulse.html", {"pulse": state})


async def switch(console: Console, request: Request, session: Session) -> Response:
    state = await reads.optional(reads.pulse(console.backend, console.budget))
    context = {"pulse": state, "confirm": None, "switch_error": None}
    return await console.section(request, session, "_switch.html", context)


async def problems(console: Console, request: Request, session: Session) -> Response:
    try:
        query = problem_query(request.query_params)
    except FormError as exc:
        context = problems_context(ProblemQuery(), None, problems_error=str(exc))
        return await console.section(request, session, "_problems.html", context, status=422)
    found = await reads.optional(reads.problems(console.backend, query.filter))
    return await console.section(request, session, "_problems.html", problems_context(query, found))


async def replay_progress(console: Console, request: Request, session: Session) -> Response:
    at = request.query_params.get("at", "")
    try:
        datetime.fromisoformat(at)
    except ValueError:
        return Response("not a replay's time", status_code=404, media_type="text/plain")
    progress = await reads.optional(replaying.progress(console.backend, at))
    return console.render(request, session, "_progress.html", {"at": at, "progress": progress})


async def dlq(console: Console, request: Request, session: Session) -> Response:
    context = await dlq_context(console)
    return await console.section(request, session, "_dlq.html", {"dlq": context})


async def dlq_context(console: Console, **extra: Any) -> dict[str, Any]:
    extra = {"notice": None, "action_error": None, **extra}
    if console.dlq is None:
        return {"loaded": True, "configured": False, **extra}
    try:
        letters = await console.dlq.list()
    except DlqError as exc:
        return {"loaded": True, "configured": True, "error": str(exc), "letters": [], **extra}
    return {"loaded": True, "configured": True, "error": None, "letters": letters, **extra}


async def lookup(console: Console, request: Request, session: Session) -> Response:
    query = (request.query_params.get("q") or "").strip()
    found: dict[str, Any] = {"query": query, "paths": None, "error": None}
    if not 1 <= len(query) <= looking.MAX_QUERY or has_control(query):
        found["error"] = f"type a sender ID, a mid or a dedup ID (1 to {looking.MAX_QUERY})" + (
            ", without control characters" if has_control(query) else ""
        )
        return await console.section(
            request, session, "_lookup.html", {"lookup": found}, status=422
        )
    found["paths"] = await reads.optional(looking.lookup(console.backend, query))
    if found["paths"] is None:
        found["error"] = "the database is unavailable"
    return await console.section(request, session, "_lookup.html", {"lookup": found})


async def audit(console: Console, request: Request, session: Session) -> Response:
    entries = await reads.optional(reads.audit_trail(console.backend))
    return console.render(request, session, "_audit.html", {"audit": entries})


async def accounts(console: Console, request: Request, session: Session) -> Response:
    found = await reads.optional(Registry(console.backend).overview())
    return console.render(request, session, "_accounts.html", accounts_context(console, found))


async def static(console: Console, request: Request, session: Session) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(STATIC / name, media_type=ASSETS[name])
