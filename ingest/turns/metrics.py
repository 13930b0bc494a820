"""Turn metrics, in the app's own registry: turns by outcome, messages per turn, and the
time from a turn's close to its hand-off. Labels are closed sets; never an id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from ingest.turns.settlement import TurnPass


class TurnMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "ingest_turns",
            "Turns handed off or stopped, by outcome (published, delivered, held, failed, "
            "retried) and closes (closed).",
            ["outcome"],
            registry=registry,
        )
        self.messages = Histogram(
            "ingest_turn_messages",
            "Messages per handed-off turn.",
            buckets=(1, 2, 3, 5, 8, 13, 20, 50),
            registry=registry,
        )
        self.latency = Histogram(
            "ingest_turn_handoff_seconds",
            "From a turn's close to QStash's acceptance or the downstream's 2xx.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=registry,
        )

    def observe_pass(self, result: TurnPass) -> None:
        if result.closed:
            self.outcomes.labels("closed").inc(result.closed)
        for outcome, count in result.settled.items():
            self.outcomes.labels(outcome).inc(count)
        for size in result.sizes:
            self.messages.observe(size)
        for lag in result.lags:
            self.latency.observe(lag)
