"""`ingestctl messages` and `ingestctl tail`: the stored messages, from a shell.

`messages` lists the newest first (time, direction, customer, kind, text), cut to the
terminal's width only when stdout is a terminal and whole when piped; `--json` gives
every field. `tail` prints the last few, then follows new ones as they are stored, like
`tail -f`, until Ctrl-C. Both read `ingest_messages` (the same rows the console's
conversation page shows). Text is the customer's own: control characters are shown
as `\\x1b`-style escapes, so a message cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from datetime import datetime
from typing import Any

from ingest.config.settings import Settings
from ingest.ops.audit import visible
from ingest.ops.output import OK, emit
from storage import Backend

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
TAIL_BACKLOG = 10
TAIL_POLL_SECONDS = 1.0


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"--limit takes 1 to {MAX_LIMIT}")
    return number


def _since(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    listing = sub.add_parser("messages", parents=[common], help="the stored messages, newest first")
    listing.add_argument("--customer", help="only this customer's conversation (their IGSID)")
    listing.add_argument("--since", type=_since, help="only messages sent since (ISO 8601)")
    listing.add_argument(
        "--limit", type=_limit, default=DEFAULT_LIMIT, help=f"at most N (default {DEFAULT_LIMIT})"
    )
    follow = sub.add_parser("tail", parents=[common], help="follow new messages until Ctrl-C")
    follow.add_argument("--customer", help="only this customer's conversation (their IGSID)")


async def read(
    backend: Backend,
    *,
    customer: str | None = None,
    since: datetime | None = None,
    after: tuple[str, str] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Newest first; or, `after` a (stored_at, mid) already seen, oldest first from there."""
    rows: list[dict[str, Any]] = await backend.call(
        "ingest_messages",
        {
            "p_customer": customer,
            "p_since": since.isoformat() if since else None,
            "p_after": after[0] if after else None,
            "p_after_mid": after[1] if after else None,
            "p_limit": limit,
        },
    )
    return rows


async def messages(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    rows = await read(backend, customer=args.customer, since=args.since, limit=args.limit)
    width = _terminal_width()
    emit(args, rows, lambda rs: "\n".join(line(r, width) for r in rs) or "no messages stored")
    return OK


async def tail(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """The last few, oldest first, then each new one as it is stored. Ctrl-C ends it
    (`ingest.ops.cli` turns it into a one-line goodbye, never a traceback)."""
    backlog = list(reversed(await read(backend, customer=args.customer, limit=TAIL_BACKLOG)))
    after = _cursor(backlog[-1]) if backlog else ("-infinity", "")  # text: cast in SQL
    width = _terminal_width()
    _show(args, backlog, width)
    if not args.json:
        print("following new messages; Ctrl-C to stop", file=sys.stderr, flush=True)
    while True:
        await asyncio.sleep(TAIL_POLL_SECONDS)
        fresh = await read(backend, customer=args.customer, after=after, limit=MAX_LIMIT)
        if fresh:
            after = _cursor(fresh[-1])
            _show(args, fresh, width)


def _cursor(row: dict[str, Any]) -> tuple[str, str]:
    return str(row["stored_at"]), str(row["mid"])


def _show(args: argparse.Namespace, rows: list[dict[str, Any]], width: int | None) -> None:
    for row in rows:  # one JSON object a line when following: what `jq` reads as it comes
        print(json.dumps(row, default=str) if args.json else line(row, width), flush=True)


def _terminal_width() -> int | None:
    """The terminal's width when stdout is one; None (never cut) when piped."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((100, 24)).columns


def line(row: dict[str, Any], width: int | None = None) -> str:
    """`2026-12-07 01:02:03  in   1234567890123456  text  Hi! Is the blue one available?`"""
    when = str(row.get("sent_at") or row.get("stored_at") or "")[:19].replace("T", " ")
    arrow = "in " if row["direction"] == "in" else "out"
    text = visible(row.get("text") or "")
    extras = [visible(a.get("url") or a.get("type") or "") for a in row.get("attachments") or []]
    if row.get("edit_count"):
        extras.append(f"(edited {row['edit_count']}x)")
    for reaction in row.get("reactions") or []:
        extras.append(f"[{visible(reaction.get('emoji') or reaction.get('reaction') or '?')}]")
    body = " ".join(part for part in (text, *extras) if part)
    customer = visible(row.get("customer") or "-")
    text_line = f"{when}  {arrow}  {customer:<16}  {row['kind']:<10}  {body}"
    text_line = text_line.rstrip()
    if width is not None and len(text_line) > width:
        return text_line[: max(width - 1, 1)] + "…"
    return text_line
