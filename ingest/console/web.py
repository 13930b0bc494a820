"""The console's request plumbing: who may see what, forms, and how sections render.

`Console` holds what the app factory handed down (backend, sessions, templates, the
DLQ client). Every endpoint goes through `view` (GET: a signed-in session, else the
login page) or `action` (POST: same origin, a urlencoded body of bounded size, the
session's CSRF token, then a signed-in session), and every response leaves with the
security headers. A section answers an htmx request with its fragment and any other
request with the whole page around it, so each form also works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from contracts.http import BodyTooLarge, read_body
from ingest.console import security
from ingest.console.session import MAX_AGE_SECONDS, Session, Sessions
from ingest.console.throttle import LoginThrottle
from ingest.ops.dlq import Dlq
from storage import Backend, StorageError

MAX_FORM_BYTES = 64 * 1024
HOME = "/console"
# An htmx response with this header makes every section listening refresh itself.
CHANGED = {"HX-Trigger": "console-changed"}

Endpoint = Callable[[Request], Awaitable[Response]]
View = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, FormData], Awaitable[Response]]
PageLoader = Callable[["Console", Session], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Console:
    backend: Backend
    sessions: Sessions
    templates: Jinja2Templates
    dlq: Dlq | None
    budget: int
    label: str
    public_origin: str | None
    load_page: PageLoader = field(repr=False)
    connect: Callable[[], Awaitable[str]] | None = field(default=None, repr=False)
    throttle: LoginThrottle | None = None

    # --- guards -------------------------------------------------------------------------

    def view(self, handler: View, *, public: bool = False) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            if not public and (session is None or not session.signed_in):
                return security.secure(to_login(request))
            return security.secure(await handler(request, session or self.sessions.new()))

        return endpoint

    def action(self, handler: Action, *, signed_in: bool = True) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return security.secure(await self._checked(request, handler, signed_in))

        return endpoint

    async def _checked(self, request: Request, handler: Action, signed_in: bool) -> Response:
        if not security.same_origin(request, self.public_origin):
            return refused(403, "This request came from another site.")
        form = await read_form(request)
        session = await self.session_of(request)
        token = _text(form, "csrf_token") if form is not None else None
        if form is None or session is None or not self.sessions.csrf_matches(session, token):
            return refused(403, "The form's CSRF token is missing or belongs to another session.")
        if signed_in and not session.signed_in:
            return to_login(request)
        try:
            return await handler(request, session, form)
        except StorageError:
            return refused(503, "The database is unavailable; see the state strip, then retry.")

    async def session_of(self, request: Request) -> Session | None:
        """The cookie's session; a signed-out one is anonymous again (a copy of the cookie
        outlives the sign-out). With the database down, the cookie alone decides: every
        page then says so and every action is refused anyway."""
        session = self.sessions.read(request)
        if session is None or not session.signed_in:
            return session
        try:
            answer = await self.backend.call(
                "ingest_console_is_signed_out", {"p_sid_digest": session.digest}
            )
        except StorageError:
            return session
        return Session(session.sid) if answer["signed_out"] else session

    async def sign_out(self, session: Session) -> None:
        """Remember the session as ended until its cookie would have expired."""
        await self.backend.call(
            "ingest_console_sign_out",
            {"p_sid_digest": session.digest, "p_seconds": MAX_AGE_SECONDS},
        )

    # --- rendering ----------------------------------------------------------------------

    def render(
        self,
        request: Request,
        session: Session,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        base = {
            "operator": session.name,
            "csrf_token": self.sessions.csrf_token(session),
            "budget": self.budget,
            "label": self.label,
        }
        return self.templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status, headers=headers
        )

    async def section(
        self,
        request: Request,
        session: Session,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        changed: bool = False,
    ) -> Response:
        """The section's fragment for htmx, else the whole page with this section's state."""
        headers = CHANGED if changed else None
        if request.headers.get("hx-request") == "true":
            return self.render(request, session, template, context, status=status, headers=headers)
        page = await self.load_page(self, session)
        return self.render(request, session, "console.html", {**page, **context}, status=status)


def public_origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def to_login(request: Request) -> Response:
    """Not signed in (or the session expired): htmx is told to load the login page."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": HOME})
    return RedirectResponse(HOME, status_code=303)


def refused(status: int, sentence: str) -> Response:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Refused</title>"
        f"<p>{sentence} <a href={HOME}>Back to the console</a></p></html>"
    )
    return HTMLResponse(body, status_code=status)


async def read_form(request: Request) -> FormData | None:
    """A urlencoded body of at most 64 KB, as htmx and plain forms send; None for anything
    else, which therefore carries no CSRF token either (403)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return None
    try:
        body = await read_body(request, MAX_FORM_BYTES)
    except BodyTooLarge:
        return None
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=1000)
        return FormData([(name, value) for name, value in pairs])
    except (UnicodeDecodeError, ValueError):
        return None


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def text(form: FormData, name: str) -> str:
    """A form field as text ('' when absent)."""
    return _text(form, name) or ""


def texts(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str)]
