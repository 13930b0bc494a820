"""One reconcile run per account at a time, across every instance: a lease row.

An advisory lock would not do: the Supabase backend runs each call in its own
transaction, and the lock would end with it. So a run claims the account's row
(`ig_reconcile_claim`) for `lease_seconds`, renews it while it walks, and releases it
when done (`ig_reconcile_finish`), recording the outcome and, when Meta asked us to
wait, a pause every later run honours. A run that dies leaves the lease to expire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from storage import Backend


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

    async def keep(self, account_id: str, token: str) -> None:
        """Renew the lease once a third of it has passed; `LeaseLost` if it is gone."""
        if time.monotonic() - self._renewed.get(account_id, 0.0) < self._seconds / 3:
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
