"""`ingestctl reconcile`: recover from the Graph API the messages webhooks never delivered.

`ingestctl reconcile [--hours N | --since ISO] [--account ID] [--dry-run] [--no-wait]`
walks each configured account (or `--account`) back to the window's start and admits
what the ledger lacks, then relays it here (unless `--no-wait`: the running service's
relay does). `--dry-run` admits nothing and says what it would recover. `--status`
shows each account's last run, lease and pause. Exit codes as for every command: 0 every
account done, 1 one was not (token refused, throttled, another run holds it), 2 no
token configured or no such account, 3 database unavailable.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.config.settings import Settings
from ingest.delivery.admission import Admission
from ingest.graph.client import GraphClients
from ingest.graph.rate_limit import Clock, SystemClock
from ingest.ops.output import OK, TROUBLE, USAGE, Failed, emit
from ingest.ops.relaying import open_backend, publishing
from ingest.reconcile.lease import LeaseStore
from ingest.reconcile.run import AccountSummary
from ingest.reconcile.service import holder, make_reconciler
from storage import Backend

DEFAULT_HOURS = 24.0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    rec = sub.add_parser(
        "reconcile", parents=[common], help="recover messages the webhooks never delivered"
    )
    window = rec.add_mutually_exclusive_group()
    window.add_argument("--hours", type=_positive, help=f"look back N hours ({DEFAULT_HOURS:g})")
    window.add_argument("--since", type=_aware_time, help="look back to this time (ISO 8601)")
    rec.add_argument("--account", help="only this account (its id, as webhooks name it)")
    rec.add_argument("--dry-run", action="store_true", help="count what is missing, admit nothing")
    rec.add_argument("--no-wait", action="store_true", help="leave relaying to the service")
    rec.add_argument("--status", action="store_true", help="each account's last run; no run")


async def reconcile(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.graph_accounts and not settings.accounts.stores_tokens:
        raise Failed(
            "no Graph token: set INSTAGRAM_ACCESS_TOKEN (with INSTAGRAM_ACCOUNT_ID) or "
            "INSTAGRAM_ACCESS_TOKENS, or connect accounts (TOKEN_ENCRYPTION_KEY)",
            USAGE,
        )
    if not (args.status or args.dry_run or args.no_wait):  # it relays here: decided first
        settings = publishing(settings)
    now = datetime.now(UTC)
    since = args.since or now - timedelta(hours=args.hours or DEFAULT_HOURS)
    async with open_backend(settings) as backend:
        if args.status:
            rows = await LeaseStore(backend, holder=holder()).status()
            emit(args, rows, _status_lines)
            return OK
        summaries, settled = await run_reconcile(
            settings, backend, (now - since).total_seconds(), account=args.account,
            dry_run=args.dry_run, relay=not args.no_wait,
        )  # fmt: skip
    if args.account and not summaries:
        raise Failed(f"no configured account {args.account}", USAGE)
    data = {"since": since.isoformat(timespec="seconds"), "dry_run": args.dry_run,
            "accounts": [s.as_dict() for s in summaries], "settled": settled}  # fmt: skip
    emit(args, data, _summary_lines)
    return OK if all(s.outcome == "done" for s in summaries) else TROUBLE


async def run_reconcile(
    settings: Settings,
    backend: Backend,
    window_seconds: float,
    *,
    account: str | None = None,
    dry_run: bool = False,
    relay: bool = True,
    clock: Clock | None = None,
) -> tuple[list[AccountSummary], dict[str, int]]:
    """One run over the accounts with a usable token (environment and connected ones; not
    those needing re-authorisation), as `ingestctl reconcile` does it; then the relay
    settles what was admitted (`relay`). Returns the summaries and what settled."""
    from ingest.accounts.service import AccountsService
    from ingest.components import make_http_client
    from ingest.ops.relaying import relay_until_done

    http = make_http_client()
    try:
        book = AccountsService.build(settings, backend, http).book
        await book.start()
        clients = GraphClients(
            settings.graph_accounts, http, settings.graph_api_url, clock or SystemClock(),
            source=book.graph_accounts, on_rejected=book.rejected,
        )  # fmt: skip
        reconciler = make_reconciler(settings, backend, clients, Admission(backend))
        summaries = await reconciler.run(window_seconds, account=account, dry_run=dry_run)
    finally:
        await http.aclose()
    settled: dict[str, int] = {}
    if relay and not dry_run and any(s.recovered for s in summaries):
        settled = dict((await relay_until_done(backend, settings)).settled)
    return summaries, settled


def _summary_lines(data: dict[str, Any]) -> str:
    verb = "would recover" if data["dry_run"] else "recovered"
    lines = [f"reconcile since {data['since']}" + (" (dry run: nothing admitted)"
                                                    if data["dry_run"] else "")]  # fmt: skip
    for s in data["accounts"]:
        line = f"account {s['account_id']}: {s['outcome']}"
        if s["outcome"] in ("done", "token_rejected", "throttled", "failed"):
            line += (
                f", {s['conversations']} conversations, {s['messages_seen']} messages seen,"
                f" {verb} {s['recovered']}, already stored {s['already_stored']},"
                f" beyond the 20-message cap {s['skipped_20_cap']}"
            )
        if s["errors"]:
            line += ", errors " + ", ".join(f"{k}×{v}" for k, v in sorted(s["errors"].items()))
        if s["detail"]:
            line += f" ({s['detail']})"
        lines.append(line)
    if data["settled"]:
        lines.append(
            "settled: " + ", ".join(f"{k} {v}" for k, v in sorted(data["settled"].items()))
        )
    return "\n".join(lines)


def _status_lines(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no reconcile run yet"
    lines = []
    for r in rows:
        state = "running" if r["running"] else "idle"
        if r["paused_until"]:
            state += f", paused until {r['paused_until']}"
        last = r["last_summary"] or {}
        lines.append(
            f"account {r['account_id']}: {state}; last run {r['last_started_at']} →"
            f" {r['last_outcome']}, recovered {last.get('recovered', 0)}"
            + (" (dry run)" if last.get("dry_run") else "")
        )
    return "\n".join(lines)


def _positive(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {value!r}") from None
    if not hours > 0:
        raise argparse.ArgumentTypeError("--hours must be more than 0")
    return hours


def _aware_time(value: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
