"""What the service says at info level: one line at start-up, one at stop, and a summary of
what it accepted every `SUMMARY_SECONDS` (nothing when nothing happened).

A log line per delivery would cost as much as a quarter of an acknowledged webhook
(`ingest.logging`), so the hot path only adds to plain integers here; a background task
turns them into one line, `accepted`, every 10 s. With `LOG_LEVEL=debug` each delivery
also has its own `request` line. Identifiers and counts only, never message text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ingest.config.settings import Settings
from ingest.delivery.acceptance import Acceptance
from ingest.delivery.settlement import PassResult

log = structlog.get_logger("ingest")

SUMMARY_SECONDS = 10.0


@dataclass(slots=True)
class Tally:
    deliveries: int = 0
    new: int = 0
    duplicate: int = 0
    failed: int = 0
    settled: int = 0

    def since(self, before: Tally) -> Tally:
        return Tally(
            self.deliveries - before.deliveries,
            self.new - before.new,
            self.duplicate - before.duplicate,
            self.failed - before.failed,
            self.settled - before.settled,
        )

    def copy(self) -> Tally:
        return self.since(Tally())


class Activity:
    """Counts deliveries and settlements, then passes each on (to the metrics)."""

    def __init__(
        self,
        on_accepted: Callable[[Acceptance], None] | None = None,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self.tally = Tally()
        self._on_accepted = on_accepted
        self._on_pass = on_pass
        self._settled_by_state: dict[str, int] = {}
        self._before, self._settled_before = Tally(), dict[str, int]()

    def observe_acceptance(self, acceptance: Acceptance) -> None:
        """On the hot path: four integer additions, then the metrics."""
        tally = self.tally
        tally.deliveries += 1
        tally.new += acceptance.new
        tally.duplicate += acceptance.duplicate
        tally.failed += acceptance.failed
        if self._on_accepted is not None:
            self._on_accepted(acceptance)

    def observe_pass(self, result: PassResult) -> None:
        for state, count in result.settled.items():
            self.tally.settled += count
            self._settled_by_state[state] = self._settled_by_state.get(state, 0) + count
        if self._on_pass is not None:
            self._on_pass(result)

    def summary(self) -> dict[str, Any] | None:
        """The fields of one `accepted` line since the last one, or None when nothing
        happened meanwhile."""
        delta = self.tally.since(self._before)
        if not (delta.deliveries or delta.settled):
            return None
        settled = {
            state: count - self._settled_before.get(state, 0)
            for state, count in sorted(self._settled_by_state.items())
            if count - self._settled_before.get(state, 0)
        }
        return {
            "deliveries": delta.deliveries,
            "new": delta.new,
            "duplicate": delta.duplicate,
            "failed": delta.failed,
            "settled": settled,
        }

    def flush(self) -> None:
        """Log what happened since the last line (nothing when nothing did)."""
        fields = self.summary()
        self._before, self._settled_before = self.tally.copy(), dict(self._settled_by_state)
        if fields is not None:
            log.info("accepted", **fields)

    async def run(self, every: float = SUMMARY_SECONDS) -> None:
        """Until cancelled: one `accepted` line per interval in which something happened."""
        while True:
            await asyncio.sleep(every)
            self.flush()


def started_fields(settings: Settings) -> dict[str, Any]:
    """What the start-up line names: where it listens and what is on."""
    return {
        "listen": f"http://{settings.host}:{settings.port}",
        "env": settings.app_env.value,
        "qstash": "publish" if settings.publishes_to_qstash else "off (direct processing)",
        "console": f"http://{settings.host}:{settings.port}/console"
        if settings.console is not None
        else "off (set CONSOLE_TOKEN)",
        "reconcile": f"every {settings.reconcile_interval_seconds} s"
        if settings.reconcile_interval_seconds
        else "off",
        "metrics": _metrics(settings),
        "database": "postgres" if settings.database_url is not None else "supabase",
    }


def _metrics(settings: Settings) -> str:
    if settings.metrics_token is not None:
        return "/metrics (METRICS_TOKEN)"
    return "/metrics (public)" if settings.metrics_public or settings.development else "off"
