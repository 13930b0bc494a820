"""Reconcile inside the service: the schedule, and the fetch of messages webhooks name.

Both need a Graph token (`INSTAGRAM_ACCESS_TOKEN`, `INSTAGRAM_ACCESS_TOKENS`, or accounts
connected through the service: `source`, the account registry's usable accounts, each
with its own token; an account that needs re-authorisation gets no call). The
schedule runs when `RECONCILE_INTERVAL_SECONDS` is set: the first run shortly after
start-up, then one every interval, each looking back 3 intervals (at least an hour),
so a run that failed or was skipped is covered by the next. Every instance runs the
schedule (the web process when `RELAY_IN_WEB` is true, the worker always: it is a
background task); the lease row lets one run per account go at a time. The missing-message
fetch runs unless `RECONCILE_GRACE_SECONDS` is 0. Both share each account's Graph
client, so this process never calls an account more than twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

import httpx
import structlog

from ingest.config.accounts import GraphAccount
from ingest.config.settings import Settings
from ingest.delivery.acceptance import EventSink
from ingest.graph.client import GraphClients, Rejected
from ingest.graph.rate_limit import Clock, SystemClock
from ingest.reconcile.fetch import Tally
from ingest.reconcile.lease import LeaseStore
from ingest.reconcile.metrics import ReconcileMetrics
from ingest.reconcile.missing import MissingMessages, NoticingSink
from ingest.reconcile.run import AccountSummary, Reconciler, scheduled_window
from storage import Backend, StorageError

log = structlog.get_logger(__name__)

FIRST_RUN_AFTER_SECONDS = 10.0


def holder() -> str:
    """Who holds a lease, for `ingestctl reconcile --status`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def make_reconciler(
    settings: Settings,
    backend: Backend,
    clients: GraphClients,
    sink: EventSink,
    *,
    on_summary: Callable[[AccountSummary], None] | None = None,
) -> Reconciler:
    return Reconciler(backend, clients, sink, LeaseStore(backend, holder=holder()),
                      on_summary=on_summary)  # fmt: skip


class ReconcileSchedule:
    def __init__(self, reconciler: Reconciler, interval_seconds: int, clock: Clock) -> None:
        self._reconciler = reconciler
        self._interval = interval_seconds
        self._window = scheduled_window(interval_seconds)
        self._clock = clock

    async def run(self) -> None:
        """Run after run until cancelled; a failed run is logged, the next one tries again."""
        await self._clock.sleep(min(FIRST_RUN_AFTER_SECONDS, self._interval))
        while True:
            try:
                await self._reconciler.run(self._window)
            except StorageError as exc:
                log.warning("reconcile_run_failed", error=str(exc)[:200])
            except Exception:
                log.exception("reconcile_run_crashed")
            await self._clock.sleep(self._interval)


class ReconcileService:
    """What the app factory starts and stops for reconcile; None when not configured."""

    def __init__(
        self,
        clients: GraphClients,
        metrics: ReconcileMetrics,
        schedule: ReconcileSchedule | None,
        missing: MissingMessages | None,
    ) -> None:
        self.clients = clients
        self.metrics = metrics
        self.schedule = schedule
        self.missing = missing
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def build(
        cls,
        settings: Settings,
        backend: Backend,
        http: httpx.AsyncClient,
        sink: EventSink,
        metrics: ReconcileMetrics,
        clock: Clock | None = None,
        *,
        source: Callable[[], tuple[GraphAccount, ...]] | None = None,
        on_rejected: Rejected | None = None,
    ) -> ReconcileService | None:
        if not settings.graph_accounts and not settings.accounts.stores_tokens:
            return None
        clock = clock or SystemClock()
        clients = GraphClients(
            settings.graph_accounts, http, settings.graph_api_url, clock,
            source=source, on_rejected=on_rejected,
        )  # fmt: skip

        def stopped() -> None:
            metrics.stopped.set(sum(1 for c in clients.clients if c.stopped))

        def observe(summary: AccountSummary) -> None:
            metrics.observe_summary(summary)
            stopped()

        def checked(tally: Tally) -> None:
            metrics.observe_missing(tally)
            stopped()

        schedule = None
        if settings.reconcile_interval_seconds:
            reconciler = make_reconciler(settings, backend, clients, sink, on_summary=observe)
            schedule = ReconcileSchedule(reconciler, settings.reconcile_interval_seconds, clock)
        missing = None
        if settings.reconcile_grace_seconds > 0:
            missing = MissingMessages(
                backend, clients, sink, clock, grace_seconds=settings.reconcile_grace_seconds,
                on_checked=checked,
            )  # fmt: skip
        return cls(clients, metrics, schedule, missing)

    def watching(self, sink: EventSink) -> EventSink:
        """The webhook's sink: `sink`, telling the missing-message fetch what it accepted."""
        return sink if self.missing is None else NoticingSink(sink, self.missing.notice)

    def start(self) -> None:
        """The missing-message fetch, which the webhook feeds: it runs in the web process.
        The schedule is a background task (`ingest.background.tasks`)."""
        if self.missing is not None:
            self._tasks.append(asyncio.create_task(self.missing.run(), name="missing-messages"))

    async def stop(self) -> None:
        """Cancel the fetch; a run cut short leaves its lease to expire (then anyone may run)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
