"""Fill a thread in when a webhook names a message we do not have.

A reaction, read, reply or edit names a message by its `mid`; if that message's own
webhook never came, the thread has a hole a full reconcile run would find only later.
So the webhook's events are noticed after admission has accepted them (a dict lookup
per event: the hot path pays nothing else, and Meta's answer never waits for this),
and after a grace (the message may still be on its way) one background task asks the
ledger which are missing and fetches each from the Graph API
(`GET /{message-id}?fields=…`), admitting it like a webhook's. Bounded: at most
`max_pending` mids wait, each is handled once per `remember` mids, at most `batch` at
a time, and every call goes through its account's rate limit.
An unsend never triggers a fetch: what was unsent stays gone.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence

import structlog

from contracts import EditEvent, Event, MessageEvent, ReactionEvent, ReadEvent
from ingest.delivery.acceptance import Acceptance, EventSink, NotAccepted
from ingest.graph.client import GraphAccountError, GraphClients
from ingest.graph.rate_limit import Clock
from ingest.reconcile.fetch import FieldLadder, Tally, crash_site, fetch_message, read_message
from storage import Backend, StorageError

log = structlog.get_logger(__name__)

Key = tuple[str, str]  # (account id, mid)


def named_mid(event: Event) -> str | None:
    """The message a reaction, read, reply or edit refers to."""
    if isinstance(event, ReactionEvent | ReadEvent | EditEvent):
        return event.mid
    if isinstance(event, MessageEvent):
        return event.reply_to_mid
    return None


class NoticingSink:
    """Admission for the webhook, telling `notice` what it accepted."""

    def __init__(self, sink: EventSink, notice: Callable[[Sequence[Event]], None]) -> None:
        self._sink = sink
        self._notice = notice

    async def accept(self, events: Sequence[Event]) -> Acceptance:
        acceptance = await self._sink.accept(events)
        self._notice(events)
        return acceptance


class MissingMessages:
    def __init__(
        self,
        backend: Backend,
        clients: GraphClients,
        sink: EventSink,
        clock: Clock,
        *,
        grace_seconds: float,
        max_pending: int = 1000,
        remember: int = 10_000,
        batch: int = 50,
        on_checked: Callable[[Tally], None] | None = None,
    ) -> None:
        self._backend = backend
        self._clients = clients
        self._sink = sink
        self._clock = clock
        self._grace = grace_seconds
        self._max_pending = max_pending
        self._remember = remember
        self._batch = batch
        self._on_checked = on_checked
        self._due: dict[Key, float] = {}
        self._handled: OrderedDict[Key, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._fields = FieldLadder()
        self.dropped = 0

    def notice(self, events: Sequence[Event]) -> None:
        """Called with every accepted delivery: remember the mids its events name."""
        for event in events:
            mid = named_mid(event)
            if mid is None:
                continue
            key = (event.account_id, mid)
            if key in self._due or key in self._handled:
                continue
            if len(self._due) >= self._max_pending:
                self.dropped += 1
                continue
            self._due[key] = self._clock.now() + self._grace
            self._wake.set()

    async def run(self) -> None:
        """The background task: check what is due, until cancelled."""
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = min(self._due.values()) - self._clock.now()
            if wait > 0:
                await self._clock.sleep(wait)
            await self.check_due()

    async def check_due(self) -> Tally:
        """Check the mids whose grace is over (at most `batch`); fetch and admit the missing."""
        now = self._clock.now()
        keys = sorted((k for k, due in self._due.items() if due <= now), key=self._due.__getitem__)
        keys = keys[: self._batch]
        for key in keys:
            del self._due[key]
            self._handled[key] = None
        while len(self._handled) > self._remember:
            self._handled.popitem(last=False)
        tally = Tally()
        if keys:
            try:
                await self._fill([k for k in keys if self._clients.for_account(k[0])], tally)
            except (StorageError, NotAccepted) as exc:  # a later reconcile run finds them
                log.warning("missing_messages_not_checked", error=str(exc)[:200])
            except Exception as exc:  # unforeseen: these mids only, never the task
                tally.errors["unexpected"] += 1
                log.error("missing_messages_crashed", error=type(exc).__name__,
                          where=crash_site(exc))  # fmt: skip
            if self._on_checked is not None:
                self._on_checked(tally)
        return tally

    async def _fill(self, keys: list[Key], tally: Tally) -> None:
        wanted = {MessageEvent(account_id=a, mid=m, raw={}).dedup_id: (a, m) for a, m in keys}
        if not wanted:
            return
        known = await self._backend.call("ingest_known_dedup_ids", {"p_dedup_ids": list(wanted)})
        events: list[MessageEvent] = []
        for dedup_id, (account, mid) in wanted.items():
            if dedup_id in known:
                continue
            client = self._clients.for_account(account)
            if client is None or client.stopped:
                continue
            tally.messages_seen += 1
            try:
                item = await fetch_message(client, mid, tally, self._fields)
            except GraphAccountError as exc:
                log.warning("missing_message_not_fetched", account=account, error=str(exc))
                continue
            if item is not None and (event := read_message(item, account, tally)):
                events.append(event)
        if events:
            acceptance = await self._sink.accept(events)
            tally.recovered += acceptance.new
            tally.already_stored += acceptance.duplicate
            log.info("missing_messages_recovered", recovered=acceptance.new, asked=len(wanted))
