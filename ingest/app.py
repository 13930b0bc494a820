"""The app factory: the one place where the rooms meet.

`create_app(settings)` builds every component without I/O and hands each its
dependencies explicitly; the lifespan opens and closes what needs the event
loop (the database pool, the HTTP client). Nothing is global.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consumers.errors import MalformedRequest, respond
from consumers.instagram import ConsumerConfig
from consumers.instagram import routes as consumer_routes
from consumers.processing import Processor
from consumers.signature import verify as verify_qstash
from contracts.http import answer
from ingest.accounts.service import AccountsService
from ingest.activity import Activity, started_fields
from ingest.apidocs import routes as api_docs_routes
from ingest.background.tasks import Background, Parts, background_tasks
from ingest.components import (
    make_backend,
    make_enricher,
    make_http_client,
    make_relay,
    make_turn_relay,
)
from ingest.config.settings import Settings
from ingest.console import build as build_console
from ingest.console import routes as console_routes
from ingest.console import security as console_security
from ingest.delivery.admission import Admission
from ingest.edge import internal, webhook
from ingest.edge.body_deadline import BodyDeadline
from ingest.lifecycle import privacy
from ingest.logging import RequestContextMiddleware
from ingest.metrics import Metrics
from ingest.metrics import routes as metrics_routes
from ingest.reconcile.metrics import ReconcileMetrics
from ingest.reconcile.service import ReconcileService
from ingest.turns import callback as turn_callback
from ingest.turns.metrics import TurnMetrics
from ingest.turns.relay import configure_stores
from storage import Backend, StorageError

log = structlog.get_logger(__name__)

EVENT_OVERHEAD_BYTES = 64 * 1024


def health_routes(backend: Backend) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        """Liveness: no I/O, so a slow database never gets the process restarted."""
        return answer(200, "ok")

    async def readyz(request: Request) -> Response:
        try:
            await backend.ping()
        except StorageError as exc:  # any failure to answer means "not ready", never a 500
            log.warning("readyz_database_unavailable", error=str(exc))
            return answer(503, "unavailable", "database unavailable")
        return answer(200, "ready")

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def create_app(
    settings: Settings,
    *,
    backend: Backend | None = None,
    http: httpx.AsyncClient | None = None,
) -> Starlette:
    http = http if http is not None else make_http_client()
    backend = backend if backend is not None else make_backend(settings, http)

    base_url = settings.public_base_url or f"http://localhost:{settings.port}"
    metrics = Metrics()
    accounts = AccountsService.build(settings, backend, http)
    activity = Activity(metrics.observe_acceptance, metrics.observe_relay_pass)
    enricher = make_enricher(settings, backend, http, accounts.book)
    processor = Processor(backend, after_store=enricher.schedule if enricher else None)
    relay = make_relay(settings, backend, processor, on_pass=activity.observe_pass)
    admission = Admission(backend, on_new=relay.wake, on_accepted=activity.observe_acceptance)
    turn_relay = make_turn_relay(
        settings, backend, http, on_pass=TurnMetrics(metrics.registry).observe_pass
    )
    reconcile = ReconcileService.build(
        settings, backend, http, admission, ReconcileMetrics(metrics.registry),
        source=accounts.book.graph_accounts, on_rejected=accounts.book.rejected,
    )  # fmt: skip

    # Relay, reconcile schedule, retention...: here, or only in a worker (RELAY_IN_WEB).
    background = Background(
        background_tasks(
            Parts(settings, backend, http, relay, reconcile, accounts, turns=turn_relay)
        )
        if settings.background.in_web
        else ()
    )

    async def read_status() -> Mapping[str, Any]:
        status: Mapping[str, Any] = await backend.call("ingest_status", {})
        return {**status, "accounts": await backend.call("ig_accounts_overview", {})}

    consumer = ConsumerConfig(
        signing_keys=tuple(
            key.reveal()
            for key in (settings.qstash_current_signing_key, settings.qstash_next_signing_key)
            if key
        ),
        base_url=base_url,
        leeway_seconds=settings.qstash_leeway_seconds,
        permanent_status=settings.consumer_permanent_status,
        # An event is at most its item plus its modelled fields (the text travels once):
        # whatever the webhook accepted, the consumer accepts back from QStash.
        max_body_bytes=settings.max_body_bytes + EVENT_OVERHEAD_BYTES,
    )

    deliveries = webhook.Webhook(
        settings, reconcile.watching(admission) if reconcile else admission, metrics
    )
    routes: list[BaseRoute] = [
        *health_routes(backend),
        *webhook.routes(deliveries),
        *internal.routes(settings, admission),
        *privacy.routes(backend, settings.meta_app_secrets, base_url),
        *accounts.routes(),
        *consumer_routes(consumer, processor, backend, metrics.observe_consumer_status),
        *turn_callback.routes(backend, base_url, _turn_verifier(consumer), _turn_refusal(consumer)),
        *metrics_routes(
            metrics,
            read_status,
            settings.metrics_token,
            public=settings.metrics_public or settings.development,
        ),
        *console_routes(build_console(settings, backend, http, accounts.connect_url)),
        *api_docs_routes(settings),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.open()
        await accounts.start()
        await configure_stores(backend, settings.turns)
        background.start()
        if reconcile is not None:
            reconcile.start()
        summarising = asyncio.create_task(activity.run(), name="activity")
        log.info(
            "started",
            **started_fields(settings),
            background=list(background.names) if background.tasks else "in a worker",
        )
        try:
            yield
        finally:
            summarising.cancel()
            await accounts.stop()
            if reconcile is not None:
                await reconcile.stop()
            await background.stop()
            await relay.aclose()
            if enricher is not None:
                await enricher.drain()
            await backend.close()
            await http.aclose()
            activity.flush()  # what the last interval accepted
            log.info("stopped", listen=f"http://{settings.host}:{settings.port}")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _console_secured(request, answer(404, "not_found", "no such route"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        headers = getattr(exc, "headers", None) or {}  # keeps Starlette's `Allow` (RFC 9110)
        refused = answer(
            405, "method_not_allowed", f"{request.method} is not allowed here", headers=headers
        )
        return _console_secured(request, refused)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(BodyDeadline, seconds=settings.guards.body_timeout_seconds),
            Middleware(webhook.WebhookLane, endpoint=deliveries),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    app.state.accounts = accounts  # tests and the console reach the token book through it
    # No trailing-slash redirects: Starlette builds them from the Host header, so
    # `Host: evil.example` on `/console/` answered `307 http://evil.example/console`.
    app.router.redirect_slashes = False
    return app


def _console_secured(request: Request, response: Response) -> Response:
    """Under `/console`, Starlette's own answers carry the console's headers too."""
    if request.url.path.startswith("/console"):
        return console_security.secure(response)
    return response


def _turn_verifier(consumer: ConsumerConfig) -> turn_callback.Verify:
    def verify(header: str | None, body: bytes, url: str) -> None:
        verify_qstash(
            header, body, keys=consumer.signing_keys, url=url, leeway=consumer.leeway_seconds
        )

    return verify


def _turn_refusal(consumer: ConsumerConfig) -> turn_callback.Refuse:
    def refuse(exc: Exception) -> Response:
        if isinstance(exc, turn_callback.MalformedCallback):
            exc = MalformedRequest(str(exc))
        return respond(exc, consumer.permanent_status)

    return refuse


def app_from_env() -> Starlette:
    """For `uvicorn --factory ingest.app:app_from_env` (Procfile)."""
    import sys

    from ingest.config.base_url import with_public_base_url
    from ingest.config.env import load_or_exit
    from ingest.config.settings import SettingsError
    from ingest.logging import configure_logging
    from ingest.runtime import tune_gc

    settings = load_or_exit()
    configure_logging(settings.log_level)
    try:
        settings = with_public_base_url(settings)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app = create_app(settings)
    tune_gc()
    return app
