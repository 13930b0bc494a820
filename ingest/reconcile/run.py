"""Reconcile: ask the Graph API what each conversation holds, admit what we are missing.

Webhooks get lost upstream, and no retry brings back what never reached us. A run
walks each configured account's conversations newest first (`reconcile_walk`) down to
the window's start, turns each message into the contract event a webhook would have
made (`origin: reconcile`) and hands it to admission, the one way into the ledger: a
message we have is a duplicate there and costs nothing; a missing one is stored once
and published at most once, by the relay, like any webhook's. So erasure, the safety
gate and every other rule of admission apply to recovered messages too.

Accounts run side by side, each under its lease (`reconcile_lease`) and its own rate
limit; a token refused or a rate limit stops that account only, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import structlog

from contracts import Event
from contracts.graph import GraphApiError
from ingest.delivery.acceptance import Acceptance, EventSink, NotAccepted
from ingest.graph.client import (
    AccountUnresolved,
    GraphAccountError,
    GraphClient,
    GraphClients,
    Throttled,
    TokenRejected,
)
from ingest.reconcile.fetch import Tally, crash_site
from ingest.reconcile.lease import LeaseKeeper, LeaseLost, LeaseStore
from ingest.reconcile.walk import CallBudgetSpent, Walker
from storage import Backend, StorageError
from storage.jsonb import RawJson

log = structlog.get_logger(__name__)

MIN_WINDOW_SECONDS = 3600


def scheduled_window(interval_seconds: int) -> int:
    """A scheduled run looks back 3 intervals, at least an hour: a run that failed or
    was skipped is covered by the next ones."""
    return max(3 * interval_seconds, MIN_WINDOW_SECONDS)


@dataclass
class AccountSummary:
    """What one account's run did. `outcome`: done, token_rejected, throttled, failed,
    unresolved (no account id), running or paused (another run holds it; Meta's pause)."""

    account_id: str
    outcome: str
    detail: str | None = None
    dry_run: bool = False
    conversations: int = 0
    messages_seen: int = 0
    recovered: int = 0
    already_stored: int = 0
    skipped_20_cap: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    pause_seconds: float = 0.0

    def count(self, tally: Tally) -> AccountSummary:
        self.conversations, self.messages_seen = tally.conversations, tally.messages_seen
        self.recovered, self.already_stored = tally.recovered, tally.already_stored
        self.skipped_20_cap, self.failed = tally.skipped_20_cap, tally.failed
        self.errors = dict(tally.errors)
        return self

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class KnownIds:
    """The sink of a dry run: says what admission would say, admits nothing. An erased
    customer's message is a duplicate there (recorded as `erased`), so it is one here,
    by the same erasure test (`ig_reconcile_dry_check`)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def accept(self, events: Sequence[Event]) -> Acceptance:
        ids = [e.dedup_id for e in events]
        payload = RawJson("[" + ",".join(e.model_dump_json() for e in events) + "]")
        answer = await self._backend.call("ig_reconcile_dry_check", {"p_events": payload})
        settled = set(answer.get("known") or ()) | set(answer.get("erased") or ())
        fresh = len(set(ids) - settled)
        return Acceptance(new=fresh, duplicate=len(ids) - fresh)


class Reconciler:
    def __init__(
        self,
        backend: Backend,
        clients: GraphClients,
        sink: EventSink,
        lease: LeaseStore,
        *,
        wall: Callable[[], float] = time.time,
        on_summary: Callable[[AccountSummary], None] | None = None,
    ) -> None:
        self._backend = backend
        self._clients = clients
        self._sink = sink
        self._lease = lease
        self._wall = wall
        self._on_summary = on_summary

    async def run(
        self, window_seconds: float, *, account: str | None = None, dry_run: bool = False
    ) -> list[AccountSummary]:
        """One run over every account (or `account`), looking back `window_seconds`."""
        since = self._wall() - window_seconds
        runs = [self._guarded(c, since, account, dry_run) for c in self._clients.clients]
        return [s for s in await asyncio.gather(*runs) if s is not None]

    async def _guarded(
        self, client: GraphClient, since: float, only: str | None, dry_run: bool
    ) -> AccountSummary | None:
        """One account's run, whatever happens in it: an exception nobody foresaw ends
        that account (`failed`, said and counted), never the run or the other accounts."""
        try:
            return await self._account(client, since, only, dry_run)
        except Exception as exc:
            name = client.account_id or client.account.name
            summary = AccountSummary(name, "failed", _crashed(name, exc))
            summary.errors["unexpected"] = 1
            return self._told(summary)

    async def _account(
        self, client: GraphClient, since: float, only: str | None, dry_run: bool
    ) -> AccountSummary | None:
        if client.stopped is not None:
            if only not in (None, client.account_id):
                return None
            return self._told(AccountSummary(client.account.name, "token_rejected", client.stopped))
        try:
            account_id = await client.resolve_account_id()
        except GraphAccountError as exc:
            return self._told(AccountSummary(client.account.name, _outcome(exc), str(exc)))
        if only is not None and account_id != only:
            return None
        claim = await self._lease.claim(account_id)
        if not claim.claimed or claim.token is None:
            detail = f"{claim.reason} until {claim.until}"
            return self._told(AccountSummary(account_id, claim.reason or "running", detail))
        try:
            summary = await self._walk(client, account_id, since, dry_run, claim.token)
        except asyncio.CancelledError:  # shutting down: free the account for the next run
            with contextlib.suppress(StorageError, TimeoutError):
                finish = self._lease.finish(account_id, claim.token, "interrupted", {}, 0)
                await asyncio.wait_for(asyncio.shield(finish), 5.0)
            raise
        try:
            await asyncio.shield(
                self._lease.finish(account_id, claim.token, summary.outcome, summary.as_dict(),
                                   summary.pause_seconds)
            )  # fmt: skip
        except StorageError as exc:  # the lease expires by itself
            log.warning("reconcile_finish_failed", account=account_id, error=str(exc)[:200])
        return self._told(summary)

    async def _walk(
        self, client: GraphClient, account_id: str, since: float, dry_run: bool, token: str
    ) -> AccountSummary:
        sink = KnownIds(self._backend) if dry_run else self._sink

        async def keep_lease() -> None:
            await self._lease.keep(account_id, token)

        walker = Walker(client, account_id, since, sink, on_conversation=keep_lease)
        summary = AccountSummary(account_id, "done", dry_run=dry_run)
        walk = asyncio.create_task(walker.run())
        keeper = LeaseKeeper(self._lease, account_id, token, on_lost=walk.cancel)
        keeping = asyncio.create_task(keeper.run())
        try:
            try:
                await walk
            finally:
                keeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeping
        except asyncio.CancelledError:
            if not keeper.lost:
                raise  # shutting down: `_account` frees the lease
            summary.outcome = "failed"
            summary.detail = "the lease was lost mid-run: stopped, admitting nothing more"
        except GraphAccountError as exc:
            summary.outcome, summary.detail = _outcome(exc), str(exc)
            if isinstance(exc, Throttled):
                summary.pause_seconds = exc.seconds
            error = getattr(exc, "error", None)
            if isinstance(error, GraphApiError):
                walker.tally.errors[error.label] += 1
        except GraphApiError as exc:  # the conversation list itself could not be read
            summary.outcome, summary.detail = "failed", f"conversations not listed ({exc.label})"
            walker.tally.errors[exc.label] += 1
        except CallBudgetSpent as exc:
            summary.outcome, summary.detail = "failed", str(exc)
            walker.tally.errors["call_budget"] += 1
        except (NotAccepted, StorageError, LeaseLost) as exc:
            summary.outcome, summary.detail = "failed", str(exc)[:300]
        except Exception as exc:  # unforeseen: this account ends, its lease is released
            summary.outcome, summary.detail = "failed", _crashed(account_id, exc)
            walker.tally.errors["unexpected"] += 1
        return summary.count(walker.tally)

    def _told(self, summary: AccountSummary) -> AccountSummary:
        level = "info" if summary.outcome == "done" else "warning"
        getattr(log, level)(
            "reconcile_account", account=summary.account_id, outcome=summary.outcome,
            detail=summary.detail, conversations=summary.conversations,
            seen=summary.messages_seen, recovered=summary.recovered,
            skipped_20_cap=summary.skipped_20_cap, errors=summary.errors,
            dry_run=summary.dry_run,
        )  # fmt: skip
        if self._on_summary is not None:
            self._on_summary(summary)
        return summary


def _outcome(exc: GraphAccountError) -> str:
    if isinstance(exc, TokenRejected):
        return "token_rejected"
    if isinstance(exc, Throttled):
        return "throttled"
    return "unresolved" if isinstance(exc, AccountUnresolved) else "failed"


def _crashed(account: str, exc: Exception) -> str:
    """Log an unforeseen error by type and place (its text may hold a URL with the
    token); the summary's detail."""
    log.error("reconcile_account_crashed", account=account, error=type(exc).__name__,
              where=crash_site(exc))  # fmt: skip
    return f"unexpected {type(exc).__name__}"
