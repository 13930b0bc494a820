"""Prometheus metrics: cheap counters on the hot path, database-backed gauges at scrape time.

Each app gets its own `CollectorRegistry` (no process-global state, so tests and
several apps in one process never mix counts). Labels are small closed sets
(kinds, outcomes, status classes): never user IDs or message IDs.

The gauges that describe shared state (backlog, held and failed events, breaker,
kill switch) are read from the database when Prometheus scrapes, not maintained per
event, so the hot path pays nothing for them and every instance reports the same
truth; when the database cannot be read they are absent, and `ingest_database_up` is 0.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts import Event, EventKind
from contracts.http import answer
from ingest.config.settings import Secret
from ingest.delivery.acceptance import Acceptance
from ingest.delivery.settlement import PassResult
from storage import StorageError

StatusReader = Callable[[], Awaitable[Mapping[str, Any]]]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_deliveries = Counter(
            "ingest_webhook_deliveries",
            "Meta webhook POSTs by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.webhook_events = Counter(
            "ingest_webhook_events",
            "Events parsed from Meta deliveries, by kind.",
            ["kind"],
            registry=self.registry,
        )
        # Resolved once: `labels()` takes a lock and a dict lookup per call, on the hot path.
        self._events_by_kind = {kind: self.webhook_events.labels(kind.value) for kind in EventKind}
        self.admissions = Counter(
            "ingest_admissions",
            "Events recorded in the ledger, by outcome (new, duplicate, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self._admitted = tuple(self.admissions.labels(o) for o in ("new", "duplicate", "failed"))
        self._deliveries_by_status: dict[int, Counter] = {}
        self.publish_latency = Histogram(
            "ingest_qstash_publish_seconds",
            "Time of one QStash batch call, retries included.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.relay_settled = Counter(
            "ingest_relay_settled",
            "Ledger rows the relay settled, by state (published, direct, held, failed) or "
            "put back with a backoff (retried).",
            ["state"],
            registry=self.registry,
        )
        self.relay_lag = Histogram(
            "ingest_relay_lag_seconds",
            "Admission (or, for a replayed event, its replay) to delivery: published or "
            "stored directly. Held and failed events are not observed (not delivered).",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.gate_refusals = Counter(
            "ingest_gate_refusals",
            "Events the safety gate did not let cost a QStash message, by reason; each was "
            "stored directly (or held, with reason kill_switch in hold mode).",
            ["reason"],
            registry=self.registry,
        )
        self.consumer_outcomes = Counter(
            "ingest_consumer_deliveries",
            "QStash deliveries to the consumer, by status class (2xx, 4xx, 5xx).",
            ["status_class"],
            registry=self.registry,
        )

    def observe_events(self, events: Iterable[Event]) -> None:
        for event in events:
            self._events_by_kind[event.kind].inc()

    def observe_acceptance(self, acceptance: Acceptance) -> None:
        new, duplicate, failed = self._admitted
        if acceptance.new:
            new.inc(acceptance.new)
        if acceptance.duplicate:
            duplicate.inc(acceptance.duplicate)
        if acceptance.failed:
            failed.inc(acceptance.failed)

    def observe_webhook_status(self, status: int) -> None:
        counter = self._deliveries_by_status.get(status)
        if counter is None:  # a status seen for the first time (a handful exist)
            counter = self._deliveries_by_status[status] = self.webhook_deliveries.labels(
                str(status)
            )
        counter.inc()

    def observe_relay_pass(self, result: PassResult) -> None:
        for state, count in result.settled.items():
            self.relay_settled.labels(state).inc(count)
        for reason, count in result.refusals.items():
            self.gate_refusals.labels(reason).inc(count)
        for lag in result.lags:
            self.relay_lag.observe(lag)
        for seconds in result.publish_seconds:
            self.publish_latency.observe(seconds)

    def observe_consumer_status(self, status: int) -> None:
        self.consumer_outcomes.labels(f"{status // 100}xx").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def routes(
    metrics: Metrics, read_status: StatusReader, token: Secret | None, *, public: bool
) -> list[BaseRoute]:
    """`GET /metrics`: with `METRICS_TOKEN`, for that bearer token only; without one, open
    only where `public` (METRICS_PUBLIC=true, or development), else closed (403)."""
    expected = f"Bearer {token.reveal()}".encode() if token else None

    async def scrape(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return answer(401, "unauthorized", "missing or wrong bearer token")
        elif not public:
            return answer(
                403, "forbidden", "metrics are closed: set METRICS_TOKEN or METRICS_PUBLIC"
            )
        try:
            status: Mapping[str, Any] | None = await read_status()
        except StorageError:  # a scrape must not fail because the database is down
            status = None
        body = metrics.render() + _database_gauges(status)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", scrape, methods=["GET"])]


# Read from the database at scrape time: every instance reports the same truth, and the
# hot path pays nothing for them. When the database cannot be read they are absent, not
# 0 (a kill switch reported as off while nobody can tell would be a lie).
_DATABASE_GAUGES = (
    ("ingest_pending_events", "Admitted events the relay has not settled yet.", "pending"),
    ("ingest_held_events", "Events held by the kill switch and not yet replayed.", "held"),
    ("ingest_failed_events", "Events that could not be stored (replayable).", "failed"),
    ("ingest_kill_switch_active", "1 while the kill switch is on.", "kill_switch"),
    (
        "ingest_deauthorized_accounts",
        "Business accounts that disconnected the app (Meta's deauthorize callback).",
        "deauthorized_accounts",
    ),
    (
        "ingest_breaker_tripped",
        "1 while the breaker has tripped the kill switch.",
        "breaker_tripped",
    ),
)


def _database_gauges(status: Mapping[str, Any] | None) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    up = Gauge("ingest_database_up", "1 when the database answered this scrape.", registry=registry)
    up.set(0.0 if status is None else 1.0)
    if status is not None:
        for name, description, key in _DATABASE_GAUGES:
            Gauge(name, description, registry=registry).set(float(status.get(key) or 0))
        _account_gauges(registry, status.get("accounts"))
    return generate_latest(registry)


ACCOUNT_STATES = ("active", "needs_reauth", "deauthorized")


def _account_gauges(registry: CollectorRegistry, accounts: Any) -> None:
    """`ingest_accounts{state}` and the fewest days any active account's token has left
    (labelled by state only: no account id is ever a label)."""
    if not isinstance(accounts, list):
        return
    by_state = Gauge("ingest_accounts", "Business accounts by state.", ["state"],
                     registry=registry)  # fmt: skip
    for state in ACCOUNT_STATES:
        by_state.labels(state=state).set(sum(1 for a in accounts if a.get("state") == state))
    now = datetime.now(UTC)
    left = [
        (datetime.fromisoformat(a["expires_at"]) - now).total_seconds() / 86_400
        for a in accounts
        if a.get("state") == "active" and a.get("expires_at")
    ]
    if left:
        Gauge("ingest_accounts_token_days_left",
              "Days until the soonest-expiring active account token expires.",
              registry=registry).set(round(min(left), 2))  # fmt: skip
