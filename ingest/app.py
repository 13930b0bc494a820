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
from ingest.delivery.relay import Relay
from ingest.edge import internal, webhook
from ingest.lifecycle import privacy, retention
from ingest.logging import RequestContextMiddleware
from ingest.metrics import Metrics
from ingest.metrics import routes as metrics_routes
from ingest.reconcile.metrics import ReconcileMetrics
from ingest.reconcile.service import ReconcileService
from ingest.turns import callback as turn_callback
from ingest.turns.metrics import TurnMetrics
from ingest.turns.relay import TurnRelay
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
    enricher = make_enricher(settings, backend, http)
    processor = Processor(backend, after_store=enricher.schedule if enricher else None)
    relay = make_relay(settings, backend, processor, http, on_pass=metrics.observe_relay_pass)
    admission = Admission(backend, on_new=relay.wake, on_accepted=metrics.observe_acceptance)
    turn_relay = make_turn_relay(
        settings, backend, http, on_pass=TurnMetrics(metrics.registry).observe_pass
    )
    reconcile = ReconcileService.build(
        settings, backend, http, admission, ReconcileMetrics(metrics.registry)
    )

    async def read_status() -> Mapping[str, Any]:
        status: Mapping[str, Any] = await backend.call("ingest_status", {})
        return status

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

    routes: list[BaseRoute] = [
        *health_routes(backend),
        *webhook.routes(
            settings, reconcile.watching(admission) if reconcile else admission, metrics
        ),
        *internal.routes(settings, admission),
        *privacy.routes(backend, settings.meta_app_secrets, base_url),
        *consumer_routes(consumer, processor, backend, metrics.observe_consumer_status),
        *turn_callback.routes(backend, base_url, _turn_verifier(consumer), _turn_refusal(consumer)),
        *metrics_routes(
            metrics,
            read_status,
            settings.metrics_token,
            public=settings.metrics_public or settings.development,
        ),
        *console_routes(build_console(settings, backend, http)),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.open()
        await _record_accounts(backend, settings)
        relaying = asyncio.create_task(relay.run(), name="relay")
        handing_off = await _start_turns(backend, turn_relay)
        pruning = (
            asyncio.create_task(retention.run(backend, settings.retention), name="prune")
            if settings.retention.interval_seconds
            else None
        )
        if reconcile is not None:
            reconcile.start()
        log.info(
            "started",
            env=settings.app_env.value,
            qstash="publish" if settings.publishes_to_qstash else "direct processing",
        )
        try:
            yield
        finally:
            if pruning is not None:
                pruning.cancel()
            if reconcile is not None:
                await reconcile.stop()
            await _stop_relay(relay, relaying)
            if turn_relay is not None and handing_off is not None:
                turn_relay.stop()
                await asyncio.wait({handing_off}, timeout=5)
                handing_off.cancel()
            if enricher is not None:
                await enricher.drain()
            await backend.close()
            await http.aclose()

    async def not_found(request: Request, exc: Exception) -> Response:
        return _console_secured(request, answer(404, "not_found", "no such route"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        headers = getattr(exc, "headers", None) or {}  # keeps Starlette's `Allow` (RFC 9110)
        refused = answer(
            405, "method_not_allowed", f"{request.method} is not allowed here", headers=headers
        )
        return _console_secured(request, refused)

    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestContextMiddleware)],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )


def _console_secured(request: Request, response: Response) -> Response:
    """Under `/console`, Starlette's own answers carry the console's headers too."""
    if request.url.path.startswith("/console"):
        return console_security.secure(response)
    return response


async def _record_accounts(backend: Backend, settings: Settings) -> None:
    """Accounts whose token is configured join `ig_accounts` (Meta's data-deletion and
    deauthorize callbacks look accounts up there); `ingestctl accounts add` maps their
    app user id. The database may still be starting: the next start tries again."""
    for account in settings.graph_accounts:
        if account.account_id is None:
            continue
        try:
            await backend.call(
                "ig_add_account", {"p_account": account.account_id, "p_reconnect": False}
            )
        except StorageError as exc:
            log.warning("account_not_recorded", error=type(exc).__name__)
            return


async def _stop_relay(relay: Relay, task: asyncio.Task[None], grace: float = 10.0) -> None:
    """Finish the pass under way, settle what this instance admitted last, then stop.
    Whatever is still pending is claimed by another instance (or this one's successor)
    once its lease ends."""
    relay.stop()
    try:
        await asyncio.wait_for(task, grace)
        await relay.drain(deadline_seconds=grace / 2)
    except (TimeoutError, StorageError) as exc:
        log.warning("relay_stopped_with_work_left", error=type(exc).__name__)
    finally:
        task.cancel()


async def _start_turns(backend: Backend, turn_relay: TurnRelay | None) -> asyncio.Task[None] | None:
    """The turn relay's task; without TURN_WEBHOOK_URL, stores are told to open no turn."""
    if turn_relay is not None:
        return asyncio.create_task(turn_relay.run(), name="turns")
    try:
        await backend.call("ingest_turn_configure", {"p_settings": None})
    except StorageError as exc:
        log.warning("turns_not_switched_off", error=type(exc).__name__)
    return None


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
    import dataclasses
    import sys

    from ingest.config.base_url import resolve_base_url
    from ingest.config.env import load_or_exit
    from ingest.config.settings import SettingsError
    from ingest.logging import configure_logging

    settings = load_or_exit()
    configure_logging(settings.log_level)
    if settings.public_base_url is None:
        try:
            base_url = resolve_base_url(settings)
        except SettingsError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        settings = dataclasses.replace(settings, public_base_url=base_url)
    return create_app(settings)
