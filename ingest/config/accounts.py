"""The Instagram accounts reconcile may read, each with its own token.

Two ways to configure them (docs/reconcile.md):
- one account: `INSTAGRAM_ACCESS_TOKEN`, and `INSTAGRAM_ACCOUNT_ID` when known; without it
  the id is asked once from `GET /me?fields=user_id` (Instagram Login; Meta's "Get
  started" page documents that field as the professional account's id, the one webhooks
  carry as `entry[].id`);
- several: `INSTAGRAM_ACCESS_TOKENS=account_id:token,…` (Instagram Login, which lists
  `/me/conversations`), or `account_id:page_id:token` (Facebook Login, which lists
  `/{page_id}/conversations` with the Page's token).
The account id matters: a message `from` it is outbound, and events carry it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ingest.config.secret import Secret


@dataclass(frozen=True, slots=True)
class GraphAccount:
    """One account: `account_id` is None until asked from `/me` (one token, id not given)."""

    account_id: str | None
    token: Secret
    page_id: str | None = None

    @property
    def conversations_path(self) -> str:
        """Facebook Login lists the Page's conversations; Instagram Login the token's own."""
        return f"{self.page_id}/conversations" if self.page_id else "me/conversations"

    @property
    def name(self) -> str:
        return self.account_id or "(account of INSTAGRAM_ACCESS_TOKEN)"


def split_tokens(value: str) -> list[tuple[str, str | None, str]]:
    """`account_id:token` or `account_id:page_id:token`, comma-separated, as
    `(account_id, page_id, token)`; raises ValueError naming the entry's position, never
    its token."""
    entries: list[tuple[str, str | None, str]] = []
    seen: set[str] = set()
    for position, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(
                f"entry {position} is not account_id:token or account_id:page_id:token"
            )
        account, token = parts[0], parts[-1]
        page = parts[1] if len(parts) == 3 else None
        if not account.isdigit() or (page is not None and not page.isdigit()):
            raise ValueError(f"entry {position}: account and Page ids are digits")
        if account in seen:
            raise ValueError(f"entry {position}: account {account} is listed twice")
        seen.add(account)
        entries.append((account, page, token))
    if not entries:
        raise ValueError("no account:token entry")
    return entries


def read_accounts(
    listed: Secret | None,
    single: Secret | None,
    account_id: str | None,
    *,
    refuse: Callable[[str], bool] | None = None,
) -> tuple[GraphAccount, ...]:
    """The accounts from INSTAGRAM_ACCESS_TOKENS (`listed`) when set, else from
    INSTAGRAM_ACCESS_TOKEN (`single`) and INSTAGRAM_ACCOUNT_ID; ValueError names the
    variable. `refuse`: tokens that must not be used (placeholders, outside development)."""
    if account_id is not None and not account_id.isdigit():
        raise ValueError("INSTAGRAM_ACCOUNT_ID must be the account's id (digits)")
    if listed is not None:
        try:
            entries = split_tokens(listed.reveal())
        except ValueError as exc:
            raise ValueError(f"INSTAGRAM_ACCESS_TOKENS is malformed: {exc}") from None
        if refuse is not None and any(refuse(token) for _, _, token in entries):
            raise ValueError("INSTAGRAM_ACCESS_TOKENS holds a placeholder token")
        return tuple(GraphAccount(a, Secret(token), page) for a, page, token in entries)
    if single is not None:
        return (GraphAccount(account_id, single),)
    if account_id is not None:
        raise ValueError("INSTAGRAM_ACCOUNT_ID is set without INSTAGRAM_ACCESS_TOKEN")
    return ()
