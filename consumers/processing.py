"""Apply contract events to the database through `ig_apply_event`, one transaction each.

Used twice: by the QStash consumer endpoint, and in-process by the producer when
QStash is unreachable or not configured. Storage errors are raised, never
swallowed, so each caller can classify them (retry or give up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from contracts import Event
from storage import Backend

Outcome = Literal["stored", "duplicate", "erased"]
AfterStore = Callable[[Event], Awaitable[None]]


class Processor:
    def __init__(self, backend: Backend, *, after_store: AfterStore | None = None) -> None:
        self._backend = backend
        self._after_store = after_store

    async def process(self, event: Event) -> Outcome:
        """Store `event`; raises `storage.StorageUnavailable` or `storage.DataRejected`."""
        result = await self._backend.call(
            "ig_apply_event", {"p_event": event.model_dump(mode="json")}
        )
        outcome: Outcome = result["outcome"]
        if self._after_store is not None and outcome != "erased":
            await self._after_store(event)
        return outcome
