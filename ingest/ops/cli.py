"""`ingestctl`: operate the service from a shell (and from cron, with `--json` and exit codes).

Exit codes: 0 done; 1 the operation was refused or found trouble (replay while the
kill switch is on, a failure rate above 10%, a QStash call refused); 2 bad usage or
configuration; 3 the database is unavailable. Every action (kill switch, replay, DLQ
redrive) is the one the console performs too (`ingest.ops`), and is written to the
audit trail under `--by` (default: the OS user).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from ingest import runtime
from ingest.config.env import load_or_exit
from ingest.config.settings import Settings
from ingest.logging import configure_logging
from ingest.ops import commands, messages, sample
from ingest.ops.audit import MAX_NAME, os_user
from ingest.ops.output import INTERRUPTED, TROUBLE, UNAVAILABLE, Failed
from ingest.ops.relaying import open_backend, relay
from ingest.ops.turns import command as turns_command
from storage import DataRejected, StorageUnavailable

MAX_DAYS = 366


def _iso_time(value: str) -> datetime:
    """An ISO 8601 time (`2026-12-01`, `2026-12-01T10:00:00+00:00`; UTC unless it says),
    checked here so a typo is a usage error, not a database error."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days takes a whole number from 1 to {MAX_DAYS}")
    return int(value)


def _operator(value: str) -> str:
    if not 1 <= len(value.strip()) <= MAX_NAME:
        raise argparse.ArgumentTypeError(f"--by takes 1 to {MAX_NAME} characters")
    return value.strip()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ingestctl", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    acting = argparse.ArgumentParser(add_help=False)
    acting.add_argument(
        "--by", type=_operator, default=os_user(), help="who acts, for the audit trail"
    )
    sub = root.add_subparsers(dest="command", required=True)

    ks = sub.add_parser("kill-switch", help="stop publishing to QStash (or start again)")
    ks_sub = ks.add_subparsers(dest="action", required=True)
    act = ks_sub.add_parser("activate", parents=[common, acting])
    act.add_argument("reason")
    act.add_argument(
        "--hold", action="store_true", help="store nothing either: hold events for `replay`"
    )
    ks_sub.add_parser("deactivate", parents=[common, acting])

    sub.add_parser("status", parents=[common], help="switch, breaker, counts")
    mon = sub.add_parser("monitor", parents=[common], help="daily usage from the ledger")
    mon.add_argument("--days", type=_days, default=7, help="1 to 366 days back (default 7)")

    rep = sub.add_parser(
        "replay", parents=[common, acting], help="send held/failed events again, once"
    )
    rep.add_argument("--held", action="store_true", help="held events (the default)")
    rep.add_argument("--failed", action="store_true", help="events that could not be stored")
    rep.add_argument(
        "--limited", action="store_true", help="turns past the per-customer turn limits"
    )
    rep.add_argument("--since", type=_iso_time, help="only events admitted since (ISO 8601)")
    rep.add_argument("--reason", action="append", help="only rows with this reason (repeatable)")
    rep.add_argument("--dedup-id", action="append", help="only this event (repeatable)")
    rep.add_argument("--dry-run", action="store_true", help="count, change nothing")
    rep.add_argument(
        "--no-wait", action="store_true", help="leave the relaying to the running service"
    )

    rel = sub.add_parser(
        "relay", parents=[common],
        help="the worker: the relay and every background task, in this process",
    )  # fmt: skip
    rel.add_argument("--once", action="store_true", help="stop when nothing is left to settle")

    dl = sub.add_parser("dlq", help="QStash's dead-letter queue, filtered by our label")
    dl_sub = dl.add_subparsers(dest="action", required=True)
    dl_sub.add_parser("list", parents=[common])
    red = dl_sub.add_parser("redrive", parents=[common, acting])
    red.add_argument("dlq_id")

    sample.add_parser(sub, common)

    from ingest.ops import privacy

    privacy.add_parsers(sub, common, acting)
    from ingest.ops import accounts

    accounts.add_parser(sub, common, acting)
    messages.add_parsers(sub, common)

    mig = sub.add_parser("migrate", parents=[common], help="apply supabase/migrations")
    mig.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the database")
    mig.add_argument("--list", action="store_true", help="applied and pending; apply nothing")

    from ingest.ops.reconcile import add_parser as add_reconcile

    add_reconcile(sub, common)
    from ingest.ops.turns import add_parser as add_turns

    add_turns(sub, common)
    return root


async def run(args: argparse.Namespace, settings: Settings) -> int:
    needs_db: dict[str, Callable[..., Awaitable[int]]] = {
        "kill-switch": commands.kill_switch, "monitor": commands.monitor,
        "turns": turns_command,
    }  # fmt: skip
    from ingest.ops.accounts import accounts
    from ingest.ops.privacy import COMMANDS as privacy

    needs_settings: dict[str, Callable[..., Awaitable[int]]] = {
        "status": commands.status, "replay": commands.replay, "relay": relay, **privacy,
        "accounts": accounts,
        "messages": messages.messages, "tail": messages.tail,
    }  # fmt: skip
    if args.command in needs_db:
        async with open_backend(settings) as backend:
            return await needs_db[args.command](args, backend)
    if args.command in needs_settings:
        async with open_backend(settings) as backend:
            return await needs_settings[args.command](args, backend, settings)
    from ingest.ops.migrate import migrate
    from ingest.ops.reconcile import reconcile

    handlers = {
        "dlq": commands.dlq, "send-sample": sample.send_sample, "migrate": migrate,
        "reconcile": reconcile,
    }  # fmt: skip
    return await handlers[args.command](args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    settings = load_or_exit()
    configure_logging(settings.log_level, stream=sys.stderr)
    try:
        return runtime.run(run(args, settings))
    except KeyboardInterrupt:  # Ctrl-C ends `relay` and `tail`: the way out, not a crash
        print("ingestctl: stopped", file=sys.stderr)
        return INTERRUPTED
    except Failed as exc:
        print(f"ingestctl: {exc}", file=sys.stderr)
        return exc.code
    except DataRejected as exc:
        print(f"ingestctl: refused: {exc}", file=sys.stderr)
        return TROUBLE
    except (StorageUnavailable, OSError) as exc:
        print(f"ingestctl: database unavailable: {exc}", file=sys.stderr)
        return UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
