"""The operator console: `GET /console`, one page to see and steer the pipeline.

Server-rendered (Jinja2), refreshed in parts by htmx (vendored in `static/`, served
from our own origin), charts as SVG, a strict Content-Security-Policy. Without
`CONSOLE_TOKEN` every console route answers 404, like a route that does not exist.
Its actions are `ingest.ops`, the same code `ingestctl` runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import jinja2
import structlog
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates
from starlette.types import Receive, Scope, Send

from contracts.http import answer
from ingest.config.guards import SECURE_CONSOLE_TOKEN_LENGTH
from ingest.config.settings import AppEnv, Settings
from ingest.console import actions, conversations, security, turns, views
from ingest.console.filters import FILTERS
from ingest.console.session import Sessions
from ingest.console.throttle import LoginThrottle
from ingest.console.web import Console, public_origin
from ingest.ops.dlq import Dlq
from storage import Backend

log = structlog.get_logger(__name__)

GET, POST = "GET", "POST"
# (path, method, endpoint, public): public views need no signed-in session.
ROUTES: tuple[tuple[str, str, Callable[..., Any], bool], ...] = (
    ("/console", GET, views.home, True),
    ("/console/static/{name}", GET, views.static, True),
    ("/console/login", POST, actions.login, True),
    ("/console/logout", POST, actions.logout, False),
    ("/console/pulse", GET, views.pulse, False),
    ("/console/switch", GET, views.switch, False),
    ("/console/kill-switch/confirm", POST, actions.confirm_switch, False),
    ("/console/kill-switch", POST, actions.set_switch, False),
    ("/console/problems", GET, views.problems, False),
    ("/console/replay/preview", POST, actions.preview_replay, False),
    ("/console/replay", POST, actions.replay, False),
    ("/console/replay/progress", GET, views.replay_progress, False),
    ("/console/dlq", GET, views.dlq, False),
    ("/console/dlq/redrive", POST, actions.redrive, False),
    ("/console/lookup", GET, views.lookup, False),
    ("/console/audit", GET, views.audit, False),
    ("/console/accounts", GET, views.accounts, False),
    ("/console/accounts/connect", POST, actions.connect_account, False),
    ("/console/conversations", GET, conversations.listing, False),
    ("/console/conversations/{igsid}", GET, conversations.conversation, False),
    ("/console/turns", GET, turns.view, False),
    ("/console/turns/replay", POST, turns.replay, False),
)


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


def build(
    settings: Settings,
    backend: Backend,
    http: httpx.AsyncClient,
    connect: Callable[[], Awaitable[str]] | None = None,
) -> Console | None:
    """The console's dependencies, or None when `CONSOLE_TOKEN` is unset. `connect`: a
    fresh Instagram Login authorisation URL (None: no connect flow configured)."""
    if settings.console is None:
        return None
    length = len(settings.console.token.reveal())
    if not settings.development and length < SECURE_CONSOLE_TOKEN_LENGTH:
        # A warning, not a refusal: ingestion must start whatever the console's token.
        log.warning(
            "console_token_short",
            detail=f"CONSOLE_TOKEN has {length} characters; use at least "
            f"{SECURE_CONSOLE_TOKEN_LENGTH} (sign-in backs off, but a short token is guessable)",
        )
    return Console(
        backend=backend,
        sessions=Sessions(settings.console, secure=settings.app_env is AppEnv.PRODUCTION),
        templates=templates(),
        dlq=Dlq.from_settings(settings, http),
        budget=settings.safety.daily_messages,
        label=settings.qstash_label,
        public_origin=public_origin(settings.public_base_url),
        load_page=views.page_context,
        connect=connect,
        throttle=LoginThrottle(backend, settings.guards),
    )


def routes(console: Console | None) -> list[BaseRoute]:
    """Every console route; all of them 404 when the console is off."""
    if console is None:
        return [Route(path, _NotFound()) for path in dict.fromkeys(path for path, *_ in ROUTES)]
    made: list[BaseRoute] = []
    for path, method, endpoint, public in ROUTES:
        bound = partial(endpoint, console)
        if method == POST:
            made.append(Route(path, console.action(bound, signed_in=not public), methods=[POST]))
        else:
            made.append(Route(path, console.view(bound, public=public), methods=[GET]))
    return made


class _NotFound:
    """The same answer as a route that does not exist, whatever the method (a 405 would
    say the route is there): nothing says a console is here. An ASGI app rather than a
    request handler, because Starlette checks no method for those. It carries the headers
    any `/console` answer carries, as an unknown `/console/…` path's 404 does."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = security.secure(answer(404, "not_found", "no such route"))
        await response(scope, receive, send)
