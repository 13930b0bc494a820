"""Reconcile's Prometheus metrics, in the app's own registry (`ingest.metrics.Metrics`).

Labels are closed sets: outcomes, a Graph error code (or one of `network`,
`invalid_answer`, `invalid_message`, `invalid_id`, `no_customer`, `empty_pages`,
`call_budget`, `unexpected`), `scan` or `missing`. Never an account, user or message ID.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ingest.reconcile.fetch import Tally
from ingest.reconcile.run import AccountSummary


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "ingest_reconcile_runs",
            "Reconcile runs, one per account, by outcome (done, token_rejected, throttled, "
            "failed, unresolved, running, paused).",
            ["outcome"],
            registry=registry,
        )
        self.conversations = Counter(
            "ingest_reconcile_conversations", "Conversations reconcile scanned.", registry=registry
        )
        self.messages_seen = Counter(
            "ingest_reconcile_messages_seen",
            "Messages reconcile looked at within its window.",
            registry=registry,
        )
        self.recovered = Counter(
            "ingest_reconcile_recovered",
            "Messages the webhooks never delivered, admitted by reconcile: by a run's scan, or "
            "fetched because a reaction, read, reply or edit named them.",
            ["via"],
            registry=registry,
        )
        self.skipped = Counter(
            "ingest_reconcile_skipped",
            "Messages reconcile could not recover: beyond a conversation's 20 newest (20_cap).",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "ingest_reconcile_graph_errors",
            "Graph API errors reconcile met, by code.",
            ["code"],
            registry=registry,
        )
        self.stopped = Gauge(
            "ingest_reconcile_accounts_stopped",
            "Accounts whose token Meta refused (190, 102): no Graph call until it is replaced.",
            registry=registry,
        )

    def observe_summary(self, summary: AccountSummary) -> None:
        self.runs.labels(summary.outcome).inc()
        if summary.dry_run:
            return
        self.conversations.inc(summary.conversations)
        self.messages_seen.inc(summary.messages_seen)
        self._count("scan", summary.recovered, summary.skipped_20_cap, summary.errors)

    def observe_missing(self, tally: Tally) -> None:
        self.messages_seen.inc(tally.messages_seen)
        self._count("missing", tally.recovered, tally.skipped_20_cap, tally.errors)

    def _count(self, via: str, recovered: int, capped: int, errors: dict[str, int]) -> None:
        if recovered:
            self.recovered.labels(via).inc(recovered)
        if capped:
            self.skipped.labels("20_cap").inc(capped)
        for code, count in errors.items():
            self.errors.labels(code).inc(count)
