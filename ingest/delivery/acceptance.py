"""What the edge asks of admission, and what admission promises back.

The webhook answers Meta 200 once `accept` returns: by then every event of the
delivery is committed in the ledger (new, already known, or recorded as failed
with its raw), and the relay owns it until it is settled. Anything less raises
`NotAccepted`, the edge answers 503, and Meta redelivers. Kept apart from the
admission so the edge can be tested against any sink.
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
    """At least one event is not durably recorded; the sender must redeliver."""


@dataclass(frozen=True, slots=True)
class Acceptance:
    """How the events of one delivery were recorded, by outcome.

    `failed`: the database refused the event itself; its raw is kept in the ledger as a
    `failed` row with the reason (visible in `ingestctl status`), so it is not lost.
    """

    new: int = 0
    duplicate: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.new + self.duplicate + self.failed


class EventSink(Protocol):
    async def accept(self, events: Sequence[Event]) -> Acceptance:
        """Durably record every event or raise `NotAccepted`."""
        ...


async def hand_over(sink: EventSink, events: Sequence[Event], *, caller: str) -> Response:
    """Accept `events` and answer the caller: 200 with the counts, else 503 (send again).

    Never a 500: anything unexpected still means "not durably accepted, redeliver".
    """
    try:
        acceptance = await sink.accept(events)
    except NotAccepted as exc:
        log.warning("not_accepted", caller=caller, events=len(events), reason=str(exc)[:300])
        return answer(503, "unavailable", "events not durably accepted; send them again")
    except Exception:
        log.exception("sink_failed", caller=caller, events=len(events))
        return answer(503, "unavailable", "events not durably accepted; send them again")
    return answer(
        200,
        "accepted",
        events=len(events),
        new=acceptance.new,
        duplicate=acceptance.duplicate,
        failed=acceptance.failed,
    )
