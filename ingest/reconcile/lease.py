"""One reconcile run per account at a time, across every instance: a lease row.

An advisory lock would not do: the Supabase backend runs each call in its own
transaction, and the lock would end with it. So a run claims the account's row
(`ig_reconcile_claim`) for `lease_seconds`, renews it while it walks, and releases it
when done (`ig_reconcile_finish`), recording the outcome and, when Meta asked us to
wait, a pause every later run honours. A run that dies leaves the lease to expire.

Renewing between conversations is not enough: one Graph call may wait out a rate limit
for minutes, several times, and a conversation may take many pages. So `LeaseKeeper`
renews on a timer (every third of the lease) for as long as the walk is alive, and
stops the walk when a renewal finds the lease gone, or when it could not confirm it for
so long that it may have expired: then another run may hold the account, and this one
must not admit more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from storage import Backend, StorageError

log = structlog.get_logger(__name__)


class LeaseLost(Exception):
    """The run outlived its lease and another run may hold the account now."""


@dataclass(frozen=True, slots=True)
class Claim:
    claimed: bool
    token: str | None = None
    reason: str | None = None  # running | paused
    until: str | None = None


class LeaseStore:
    def __init__(self, backend: Backend, *, holder: str, lease_seconds: int = 300) -> None:
        self._backend = backend
        self._holder = holder
        self._seconds = lease_seconds
        self._renewed: dict[str, float] = {}

    async def claim(self, account_id: str) -> Claim:
        answer = await self._backend.call(
            "ig_reconcile_claim",
            {"p_account_id": account_id, "p_holder": self._holder,
             "p_lease_seconds": self._seconds},
        )  # fmt: skip
        if answer["claimed"]:
            self._renewed[account_id] = time.monotonic()
            return Claim(True, token=str(answer["token"]))
        until = answer.get("until")
        return Claim(False, reason=answer.get("reason"), until=str(until) if until else None)

    @property
    def renew_every(self) -> float:
        return self._seconds / 3

    def surely_held(self, account_id: str) -> bool:
        """Whether the last confirmed renewal leaves more than a third of the lease."""
        since = time.monotonic() - self._renewed.get(account_id, float("-inf"))
        return since < self._seconds * 2 / 3

    async def keep(self, account_id: str, token: str, *, force: bool = False) -> None:
        """Renew the lease once a third of it has passed (`force`: now); `LeaseLost` if it
        is gone."""
        if not force and time.monotonic() - self._renewed.get(account_id, 0.0) < self.renew_every:
            return
        answer = await self._backend.call(
            "ig_reconcile_renew",
            {"p_account_id": account_id, "p_token": token, "p_lease_seconds": self._seconds},
        )
        if not answer["renewed"]:
            raise LeaseLost(f"the lease on {account_id} ended before the run did")
        self._renewed[account_id] = time.monotonic()

    async def finish(
        self,
        account_id: str,
        token: str,
        outcome: str,
        summary: dict[str, Any],
        pause_seconds: float = 0.0,
    ) -> None:
        await self._backend.call(
            "ig_reconcile_finish",
            {"p_account_id": account_id, "p_token": token, "p_outcome": outcome,
             "p_summary": summary, "p_pause_seconds": round(pause_seconds)},
        )  # fmt: skip
        self._renewed.pop(account_id, None)

    async def status(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._backend.call("ig_reconcile_status", {})
        return rows


class LeaseKeeper:
    """Renews one run's lease every third of it while the run lives; calls `on_lost` (and
    sets `lost`) once the lease is gone or cannot be confirmed before it would expire."""

    def __init__(
        self, store: LeaseStore, account_id: str, token: str, on_lost: Callable[[], object]
    ) -> None:
        self._store = store
        self._account = account_id
        self._token = token
        self._on_lost = on_lost
        self.lost = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._store.renew_every)
            try:
                await self._store.keep(self._account, self._token, force=True)
                continue
            except LeaseLost:
                pass
            except Exception as exc:  # the database may be back before the lease ends
                error = str(exc)[:200] if isinstance(exc, StorageError) else type(exc).__name__
                log.warning("reconcile_lease_not_renewed", account=self._account, error=error)
                if self._store.surely_held(self._account):
                    continue
            log.error("reconcile_lease_lost", account=self._account)
            self.lost = True
            self._on_lost()
            return
