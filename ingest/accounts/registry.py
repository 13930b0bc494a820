"""`ig_accounts` through our SQL functions: what is stored of each account.

Nothing here decrypts or sees a token in clear except `connect` and `refreshed`, which
are handed the ciphertext to store. Times are passed as ISO strings (`now`): the schedule
and the tests inject a clock.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from storage import Backend

INSTAGRAM_LOGIN, FACEBOOK_PAGE, ENVIRONMENT = "instagram_login", "facebook_page", "environment"
STATES = ("active", "needs_reauth", "deauthorized")


def digest(token: str) -> str:
    """A SHA-256 of an environment token: tells a changed token from the same one."""
    return hashlib.sha256(token.encode()).hexdigest()


def expiry(now: datetime, seconds: int | None) -> str | None:
    return (now + timedelta(seconds=seconds)).isoformat() if seconds else None


class Registry:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def overview(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._backend.call("ig_accounts_overview", {})
        return rows

    async def tokens(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._backend.call("ig_account_tokens", {})
        return rows

    async def connect(
        self,
        account_id: str,
        *,
        source: str,
        ciphertext: str,
        key_id: str,
        now: datetime,
        expires_in: int | None,
        username: str | None = None,
        app_user_id: str | None = None,
        page_id: str | None = None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = await self._backend.call(
            "ig_account_connect",
            {"p_account": account_id, "p_app_user_id": app_user_id, "p_username": username,
             "p_source": source, "p_page_id": page_id, "p_ciphertext": ciphertext,
             "p_key_id": key_id, "p_expires_at": expiry(now, expires_in),
             "p_now": now.isoformat()},
        )  # fmt: skip
        return row

    async def environment(self, account_id: str, page_id: str | None, token: str) -> str:
        """Record an environment token's account; its state ("active", …) as it stands."""
        row = await self._backend.call(
            "ig_account_environment",
            {"p_account": account_id, "p_page_id": page_id, "p_digest": digest(token)},
        )
        return str(row["state"])

    async def graph_error(self, account_id: str, code: int | None, *, reauth: bool) -> None:
        await self._backend.call(
            "ig_account_graph_error",
            {"p_account": account_id, "p_code": code, "p_reauth": reauth},
        )

    async def claim_refresh(
        self, holder: str, now: datetime, *, lease_seconds: int, min_age_seconds: int,
        within_seconds: int, force: bool = False, account: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        rows: list[dict[str, Any]] = await self._backend.call(
            "ig_account_refresh_claim",
            {"p_holder": holder, "p_lease_seconds": lease_seconds, "p_now": now.isoformat(),
             "p_min_age_seconds": min_age_seconds, "p_within_seconds": within_seconds,
             "p_force": force, "p_account": account},
        )  # fmt: skip
        return rows

    async def refreshed(
        self, account_id: str, holder: str, now: datetime,
        ciphertext: str | None = None, key_id: str | None = None,
        expires_in: int | None = None,
    ) -> bool:  # fmt: skip
        done: bool = await self._backend.call(
            "ig_account_refresh_done",
            {"p_account": account_id, "p_holder": holder, "p_ciphertext": ciphertext,
             "p_key_id": key_id, "p_expires_at": expiry(now, expires_in),
             "p_now": now.isoformat()},
        )  # fmt: skip
        return done

    async def rekey(self, account_id: str, old: str, new: str, key_id: str) -> bool:
        done: bool = await self._backend.call(
            "ig_account_rekey",
            {"p_account": account_id, "p_old_ciphertext": old, "p_ciphertext": new,
             "p_key_id": key_id},
        )  # fmt: skip
        return done

    async def issue_state(self, nonce: str, ttl_seconds: int) -> None:
        await self._backend.call(
            "ig_oauth_state_issue", {"p_nonce": nonce, "p_ttl_seconds": ttl_seconds}
        )

    async def use_state(self, nonce: str) -> bool:
        used: bool = await self._backend.call("ig_oauth_state_use", {"p_nonce": nonce})
        return used
