"""`ingestctl accounts`: the business accounts, their tokens, connecting and refreshing.

`list` (also plain `accounts`) shows every account and its state, never a token; `add
ACCOUNT_ID --user-id ID` maps an account to the app-scoped id Meta's callbacks name (as
before); `add --page-token --page-id ID` stores a Facebook Page's token, read from
stdin (never argv, which `ps` shows); `connect` prints Instagram Login's authorisation
URL (first line of stdout); `refresh [--account ID] [--force]` refreshes due
Instagram-Login tokens now; `rotate-key` re-encrypts every stored token with the first
key of `TOKEN_ENCRYPTION_KEY`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from contracts.graph import GraphApiError
from ingest.accounts.cipher import TokenUnreadable
from ingest.accounts.registry import FACEBOOK_PAGE, Registry
from ingest.accounts.service import AccountsService
from ingest.components import make_http_client
from ingest.config.settings import Settings
from ingest.ops import audit
from ingest.ops.output import OK, TROUBLE, USAGE, Failed, emit
from storage import Backend

NO_KEY = "TOKEN_ENCRYPTION_KEY is not set: no token can be stored (see README, Connecting accounts)"


def add_parser(sub: Any, common: argparse.ArgumentParser, acting: argparse.ArgumentParser) -> None:
    accounts = sub.add_parser(
        "accounts", parents=[common], help="business accounts, their tokens and states"
    )
    actions = accounts.add_subparsers(dest="action", required=False)
    add = actions.add_parser("add", parents=[common, acting])
    add.add_argument("account_id", nargs="?", help="the professional account's id (entry.id)")
    add.add_argument("--user-id", help="the app-scoped user id Meta's callbacks carry")
    add.add_argument("--page-token", action="store_true",
                     help="store a Facebook Page token, read from stdin")  # fmt: skip
    add.add_argument("--page-id", help="the Facebook Page the token belongs to")
    actions.add_parser("list", parents=[common])
    actions.add_parser("connect", parents=[common], help="print the authorisation URL")
    refresh = actions.add_parser("refresh", parents=[common], help="refresh due tokens now")
    refresh.add_argument("--account", help="only this account")
    refresh.add_argument("--force", action="store_true", help="whatever the token's age")
    actions.add_parser("rotate-key", parents=[common, acting], help="re-encrypt every token")


async def accounts(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    action = args.action or "list"
    if action == "list":
        return await _list(args, backend)
    if action == "add" and not args.page_token:
        if not args.account_id:
            raise Failed("accounts add needs ACCOUNT_ID (or --page-token --page-id ID)", USAGE)
        row = await backend.call(
            "ig_add_account", {"p_account": args.account_id, "p_app_user_id": args.user_id}
        )
        emit(args, row, lambda r: f"account {r['account_id']} (app user {r['app_user_id']})")
        return OK
    async with make_http_client() as http:
        service = AccountsService.build(settings, backend, http)
        if action == "connect":
            return await _connect(args, service)
        if action == "refresh":
            return await _refresh(args, service)
        if action == "rotate-key":
            return await _rotate(args, backend, settings)
        return await _add_page(args, backend, service)


async def _list(args: argparse.Namespace, backend: Backend) -> int:
    rows = await Registry(backend).overview()
    emit(args, rows, lambda rs: "\n".join(describe(r) for r in rs) or "no accounts")
    return OK


def describe(row: dict[str, Any]) -> str:
    """One account on one line: id, name, source, state, expiry, last error."""
    state = row["state"] if row["state"] == "active" else row["state"].upper()
    name = f"@{row['username']}" if row["username"] else "-"
    parts = [row["account_id"], name, row["source"], state]
    if row["expires_at"]:
        parts.append(f"expires {str(row['expires_at'])[:10]}")
    if row["last_error_code"] is not None:
        parts.append(f"last Graph error {row['last_error_code']}")
    parts.append(f"app user {row['app_user_id'] or '-'}")
    if row["deauthorized_at"]:
        parts.append("DISCONNECTED")
    return "  ".join(parts)


async def _connect(args: argparse.Namespace, service: AccountsService) -> int:
    if service.connector is None:
        raise Failed(
            "connecting needs INSTAGRAM_APP_ID, TOKEN_ENCRYPTION_KEY and PUBLIC_BASE_URL "
            "(or OAUTH_REDIRECT_URL)", USAGE,
        )  # fmt: skip
    url = await service.connector.authorization_url()
    emit(args, {"url": url}, lambda d: f"{d['url']}\nopen it, log in and allow: "
         "the callback stores the account (the link works once, for 10 minutes)")  # fmt: skip
    return OK


async def _refresh(args: argparse.Namespace, service: AccountsService) -> int:
    if service.refresher is None:
        raise Failed(NO_KEY, USAGE)
    await service.book.load()
    done = [r.as_dict() for r in await service.refresher.run(force=args.force,
                                                             account=args.account)]  # fmt: skip
    emit(args, done, lambda rs: "\n".join(
        f"{r['account_id']}  {r['outcome']}" + (f" (code {r['code']})" if r["code"] else "")
        for r in rs) or "no token is due for a refresh")  # fmt: skip
    return OK if all(r["outcome"] == "refreshed" for r in done) else TROUBLE


async def _rotate(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    from ingest.accounts.cipher import TokenCipher

    if not settings.accounts.stores_tokens:
        raise Failed(NO_KEY, USAGE)
    cipher, registry = TokenCipher(settings.accounts.encryption_keys), Registry(backend)
    counts = {"rekeyed": 0, "current": 0, "unreadable": 0, "changed_meanwhile": 0}
    for row in await registry.tokens():
        old, account = row["ciphertext"], str(row["account_id"])
        if old is None:
            continue
        if cipher.key_of(old) == cipher.current:
            counts["current"] += 1
            continue
        try:
            new = cipher.encrypt(cipher.decrypt(old, account), account)
        except TokenUnreadable:
            counts["unreadable"] += 1
            continue
        done = await registry.rekey(account, old, new, cipher.current)
        counts["rekeyed" if done else "changed_meanwhile"] += 1
    await audit.record(backend, audit.Actor(args.by, "cli"), "accounts.rotate-key", counts)
    emit(args, counts, lambda c: ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
    return TROUBLE if counts["unreadable"] else OK


async def _add_page(args: argparse.Namespace, backend: Backend, service: AccountsService) -> int:
    if service.refresher is None:  # built exactly when a key is configured
        raise Failed(NO_KEY, USAGE)
    if not (args.page_id and args.page_id.isdigit()):
        raise Failed("--page-token needs --page-id, the Page's id (digits)", USAGE)
    token = sys.stdin.readline().strip()
    if not token:
        raise Failed("no Page token on stdin", USAGE)
    meta, cipher = service.meta, service.cipher
    assert cipher is not None
    try:
        found = await meta.page_account(args.page_id, token)
        await meta.subscribe_page(args.page_id, token)
    except GraphApiError as exc:
        raise Failed(f"Meta refused the Page token ({exc.label})") from None
    row = await Registry(backend).connect(
        found.account_id, source=FACEBOOK_PAGE, ciphertext=cipher.encrypt(token, found.account_id),
        key_id=cipher.current, now=service.now(), expires_in=None, username=found.username,
        app_user_id=args.user_id, page_id=args.page_id,
    )  # fmt: skip
    await audit.record(backend, audit.Actor(args.by, "cli"), "accounts.add",
                       {"account_id": found.account_id, "source": FACEBOOK_PAGE})  # fmt: skip
    emit(args, row, lambda r: f"account {r['account_id']} (@{r['username'] or '-'}) connected "
         "through its Facebook Page, subscribed to the messaging webhooks")  # fmt: skip
    return OK
