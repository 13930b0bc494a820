"""POST endpoints: signing in and out, and the operator's actions.

Each action calls `ingest.ops`, the same functions `ingestctl` calls, as the signed-in
operator (`Actor(name, "console")`), so both doors write the same audit trail. Actions
that are hard to take back show what they will do first: the kill switch asks for
confirmation, a replay shows the dry run's count before it runs.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ingest.accounts.registry import Registry
from ingest.console import reads
from ingest.console.forms import FormError, ProblemQuery, operator_name, problem_query, selected_ids
from ingest.console.forms import reason as checked_reason
from ingest.console.session import Session
from ingest.console.throttle import client_address
from ingest.console.views import accounts_context, dlq_context, problems_context
from ingest.console.web import HOME, Console, refused, text, texts
from ingest.ops import audit, kill_switch
from ingest.ops import replay as replaying
from ingest.ops.dlq import DlqError
from storage import StorageError

log = structlog.get_logger(__name__)


def actor(session: Session) -> audit.Actor:
    assert session.name is not None  # `Console.action` lets only signed-in sessions here
    return audit.Actor(session.name, "console")


async def login(console: Console, request: Request, session: Session, form: FormData) -> Response:
    """Every sign-in waits out the back-off first, the right token too (`throttle`)."""
    address = client_address(request)
    wait = await console.throttle.wait(address) if console.throttle else 0
    if wait:
        return _too_many(console, request, session, wait)
    try:
        name = operator_name(text(form, "name"))
    except FormError as exc:
        return _login_refused(console, request, session, str(exc), 422)
    if not console.sessions.token_matches(text(form, "token")):
        wait = await console.throttle.failed(address) if console.throttle else 0
        if wait:
            return _too_many(console, request, session, wait)
        return _login_refused(console, request, session, "That token is not the console's.", 403)
    if console.throttle:
        await console.throttle.succeeded(address)
    fresh = console.sessions.new(name)
    await _best_effort(console, actor(fresh), "console.login")
    response = RedirectResponse(HOME, status_code=303)
    console.sessions.attach(response, fresh)
    return response


async def _best_effort(console: Console, who: audit.Actor, action: str) -> None:
    """Signing in and out is recorded when the database can take it: an operator must be
    able to sign in to see that the database is down."""
    try:
        await audit.record(console.backend, who, action, {})
    except StorageError as exc:
        log.warning("console_audit_unavailable", action=action, error=str(exc)[:200])


def _too_many(console: Console, request: Request, session: Session, wait: int) -> Response:
    sentence = f"Too many wrong tokens: sign-in is paused; try again in {wait} seconds."
    return console.render(
        request, session, "login.html", {"error": sentence}, status=429,
        headers={"Retry-After": str(wait)},
    )  # fmt: skip


def _login_refused(
    console: Console, request: Request, session: Session, error: str, status: int
) -> Response:
    return console.render(request, session, "login.html", {"error": error}, status=status)


async def logout(console: Console, request: Request, session: Session, form: FormData) -> Response:
    try:
        await console.sign_out(session)
    except StorageError as exc:  # the cookie is cleared all the same
        log.warning("console_sign_out_unrecorded", error=str(exc)[:200])
    await _best_effort(console, actor(session), "console.logout")
    response = RedirectResponse(HOME, status_code=303)
    console.sessions.clear(response)
    return response


async def confirm_switch(
    console: Console, request: Request, session: Session, form: FormData
) -> Response:
    """Step one of activating: say what will happen, and ask."""
    mode = text(form, "mode")
    try:
        why = checked_reason(text(form, "reason"))
        if mode not in ("direct", "hold"):
            raise FormError("choose what happens to events: store them directly, or hold them")
    except FormError as exc:
        return await _switch(console, request, session, error=str(exc), status=422)
    return await _switch(console, request, session, confirm={"reason": why, "mode": mode})


async def set_switch(
    console: Console, request: Request, session: Session, form: FormData
) -> Response:
    """Step two: activate (as confirmed) or deactivate."""
    try:
        if text(form, "action") == "deactivate":
            await kill_switch.deactivate(console.backend, actor(session))
        else:
            hold = text(form, "mode") == "hold"
            why = checked_reason(text(form, "reason"))
            await kill_switch.activate(console.backend, actor(session), why, hold=hold)
    except FormError as exc:
        return await _switch(console, request, session, error=str(exc), status=422)
    return await _switch(console, request, session, changed=True)


async def _switch(
    console: Console,
    request: Request,
    session: Session,
    *,
    confirm: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    changed: bool = False,
) -> Response:
    state = await reads.optional(reads.pulse(console.backend, console.budget))
    context = {"pulse": state, "confirm": confirm, "switch_error": error}
    return await console.section(
        request, session, "_switch.html", context, status=status, changed=changed
    )


def _replay_target(form: FormData) -> tuple[ProblemQuery, replaying.ReplayFilter, str]:
    """The filter a replay form names: the selected events, or all matching the filter."""
    fields = {k: v for k in ("state", "reason", "since") if isinstance(v := form.get(k), str)}
    query = problem_query(fields)
    if text(form, "scope") == "selected":
        return query, query.selected(selected_ids(texts(form, "dedup_id"))), "selected"
    return query, query.filter, "all"


async def preview_replay(
    console: Console, request: Request, session: Session, form: FormData
) -> Response:
    """Step one of a replay: the dry run's count, and the button that confirms it."""
    try:
        query, which, scope = _replay_target(form)
    except FormError as exc:
        return await _problems(console, request, session, ProblemQuery(), str(exc), 422)
    count = await replaying.count(console.backend, which)
    refused = await replaying.refusal(console.backend)
    preview = {"count": count, "scope": scope, "ids": list(which.dedup_ids), "refused": refused}
    return await _problems(console, request, session, query, preview=preview)


async def replay(console: Console, request: Request, session: Session, form: FormData) -> Response:
    """Step two: replay what the operator confirmed. The confirmed count comes with the
    form; if the filter matches another number now (events held meanwhile), the fresh
    count is shown to confirm instead: a confirmation covers what it showed."""
    try:
        query, which, scope = _replay_target(form)
        expected = _confirmed_count(text(form, "expected"))
        now = await replaying.count(console.backend, which)
        if now != expected:
            sentence = f"{now} event(s) match now, not the {expected} you confirmed."
            preview = {"count": now, "scope": scope, "ids": list(which.dedup_ids), "refused": None}
            return await _problems(console, request, session, query, sentence, 409, preview=preview)
        done = await replaying.replay(console.backend, actor(session), which)
    except FormError as exc:
        return await _problems(console, request, session, ProblemQuery(), str(exc), 422)
    except replaying.ReplayRefused as exc:
        return await _problems(console, request, session, query, str(exc), 409, changed=True)
    progress = await replaying.progress(console.backend, done.at) if done.at else None
    result = {"count": done.count, "at": done.at, "progress": progress}
    return await _problems(console, request, session, query, result=result, changed=True)


def _confirmed_count(value: str) -> int:
    if not value.isdigit():
        raise FormError("preview the replay first: a replay confirms the count it showed")
    return int(value)


async def _problems(
    console: Console,
    request: Request,
    session: Session,
    query: ProblemQuery,
    error: str | None = None,
    status: int = 200,
    *,
    changed: bool = False,
    **extra: Any,
) -> Response:
    found = await reads.optional(reads.problems(console.backend, query.filter))
    context = problems_context(query, found, problems_error=error, **extra)
    return await console.section(
        request, session, "_problems.html", context, status=status, changed=changed
    )


async def redrive(console: Console, request: Request, session: Session, form: FormData) -> Response:
    dlq_id = text(form, "dlq_id").strip()
    notice, error = None, None
    if console.dlq is None or not dlq_id:
        error = "nothing to redrive"
    else:
        try:
            message_id = await console.dlq.redrive(console.backend, actor(session), dlq_id)
            notice = f"{dlq_id} redriven as QStash message {message_id}"
        except DlqError as exc:
            error = str(exc)
    context = await dlq_context(console, notice=notice, action_error=error)
    return await console.section(request, session, "_dlq.html", {"dlq": context}, changed=True)


async def connect_account(
    console: Console, request: Request, session: Session, form: FormData
) -> Response:
    """A fresh authorisation link (Instagram Login), shown for the operator to follow: a
    link, not a redirect, so the page's `form-action 'self'` holds."""
    if console.connect is None:
        return refused(404, "Connecting accounts is not configured on this service.")
    link = await console.connect()
    await audit.record(console.backend, actor(session), "accounts.connect", {})
    found = await reads.optional(Registry(console.backend).overview())
    context = accounts_context(console, found, link)
    return await console.section(request, session, "_accounts.html", context)
