"""What the webhook asks of the producer, and what the producer promises back.

The webhook answers Meta 200 only when `accept` returns: by then every event is
durably recorded (published to QStash, processed directly, held by the safety
gate, or already known). Anything less raises `NotAccepted`, the webhook answers
503, and Meta redelivers. Kept apart from the producer so the edge can be tested
against any sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from starlette.responses import Response

from contracts import Event
from contracts.http import answer

log = structlog.get_logger(__name__)


class NotAccepted(Exception):
    """At least one event is not durably accepted; the sender must redeliver."""


@dataclass(frozen=True, slots=True)
class Acceptance:
    """How the events of one delivery were accepted, by outcome."""

    published: int = 0
    direct: int = 0
    duplicate: int = 0
    held: int = 0

    @property
    def total(self) -> int:
        return self.published + self.direct + self.duplicate + self.held


class EventSink(Protocol):
    async def accept(self, events: Sequence[Event]) -> Acceptance:
        """Durably accept every event or raise `NotAccepted`."""
        ...


async def hand_over(sink: EventSink, events: Sequence[Event], *, caller: str) -> Response:
    """Accept `events` and answer the caller: 200 with the counts, else 503 (send again).

    Never a 500: anything unexpected still means "not durably accepted, redeliver".
    """
    try:
        acceptance = await sink.accept(events)
    except NotAccepted as exc:
        log.warning("not_accepted", caller=caller, events=len(events), reason=str(exc))
        return answer(503, "unavailable", "events not durably accepted; send them again")
    except Exception:
        log.exception("sink_failed", caller=caller, events=len(events))
        return answer(503, "unavailable", "events not durably accepted; send them again")
    return answer(
        200,
        "accepted",
        events=len(events),
        published=acceptance.published,
        direct=acceptance.direct,
        duplicate=acceptance.duplicate,
        held=acceptance.held,
    )
