"""The worker (the Procfile's `worker:`, `ingestctl relay`): every background task, no web.

It builds what the tasks need as the app factory does (the same `ingest.components`),
so that a web process with `RELAY_IN_WEB=false` beside a worker behaves as one instance
doing both. Events that reconcile recovers are admitted here, and wake this relay.
"""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from consumers.processing import Processor
from ingest.accounts.service import AccountsService
from ingest.background.tasks import Background, Parts, background_tasks
from ingest.components import make_enricher, make_http_client, make_relay, make_turn_relay
from ingest.config.settings import Settings
from ingest.delivery.admission import Admission
from ingest.reconcile.metrics import ReconcileMetrics
from ingest.reconcile.service import ReconcileService
from ingest.turns.relay import configure_stores
from storage import Backend

log = structlog.get_logger(__name__)


async def run_worker(settings: Settings, backend: Backend) -> None:
    """Run every background task until cancelled (SIGTERM, Ctrl-C); then stop them as
    the web process does: the relay finishes its pass and settles what it claimed."""
    http = make_http_client()
    accounts = AccountsService.build(settings, backend, http)
    await accounts.start()
    enricher = make_enricher(settings, backend, http, accounts.book)
    processor = Processor(backend, after_store=enricher.schedule if enricher else None)
    relay = make_relay(settings, backend, processor)
    admission = Admission(backend, on_new=relay.wake)
    # No metrics endpoint here: the web process's scrape reads the shared state from the
    # database (backlog, held, failed); these counters only keep the code paths alike.
    reconcile = ReconcileService.build(
        settings, backend, http, admission, ReconcileMetrics(CollectorRegistry()),
        source=accounts.book.graph_accounts, on_rejected=accounts.book.rejected,
    )  # fmt: skip
    await configure_stores(backend, settings.turns)
    turns = make_turn_relay(settings, backend, http)
    background = Background(
        background_tasks(Parts(settings, backend, http, relay, reconcile, accounts, turns=turns))
    )
    background.start()
    log.info("worker_started", background=list(background.names))
    try:
        await background.wait()
    finally:
        await background.stop()
        await relay.aclose()
        await accounts.stop()
        if enricher is not None:
            await enricher.drain()
        await http.aclose()
