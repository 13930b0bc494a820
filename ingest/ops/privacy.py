"""`ingestctl forget`, `ingestctl prune`, `ingestctl accounts`: privacy from a shell.

`forget IGSID` erases one customer (docs/privacy.md) and prints what it removed;
`--dry-run` counts only. The audit trail records that an erasure happened and what it
removed, never whom (the trail outlives the person). `prune` applies the retention
periods now. (`accounts`: `ingest.ops.accounts`.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ingest.config.settings import Settings
from ingest.lifecycle.retention import prune as prune_now
from ingest.ops import audit
from ingest.ops.output import OK, TROUBLE, USAGE, Failed, emit
from storage import Backend


def add_parsers(sub: Any, common: argparse.ArgumentParser, acting: argparse.ArgumentParser) -> None:
    forget = sub.add_parser(
        "forget", parents=[common, acting], help="erase one customer (profile, messages, …)"
    )
    forget.add_argument("igsid", help="the customer's Instagram-scoped id")
    forget.add_argument("--account", help="only under this business account")
    forget.add_argument("--dry-run", action="store_true", help="count, erase nothing")
    forget.add_argument(
        "--yes", action="store_true", help="erase without asking (scripts: stdin is no terminal)"
    )
    sub.add_parser("prune", parents=[common], help="apply the retention periods now")


async def forget(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    if not args.dry_run and not args.yes:
        await _confirm_erasure(args, backend)
    removed = await backend.call(
        "ig_forget",
        {"p_igsid": args.igsid, "p_account": args.account, "p_dry_run": args.dry_run},
    )
    if not args.dry_run:
        await audit.record(backend, audit.Actor(args.by, "cli"), "forget", {"removed": removed})
    verb = "would remove" if args.dry_run else "removed"
    emit(args, removed, lambda r: f"{verb}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.items())))
    return OK


async def _confirm_erasure(args: argparse.Namespace, backend: Backend) -> None:
    """On a terminal, say what would go and ask; elsewhere, refuse without `--yes`: an
    erasure cannot be undone, so it never happens by a slip of the keyboard or a script
    that forgot what it runs."""
    if not sys.stdin.isatty():
        raise Failed(
            "forget erases for good: pass --yes to confirm (stdin is not a terminal to ask on)",
            USAGE,
        )
    would = await backend.call(
        "ig_forget", {"p_igsid": args.igsid, "p_account": args.account, "p_dry_run": True}
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(would.items()))
    print(f"would remove: {counts}", file=sys.stderr)
    try:
        question = f"erase customer {args.igsid} for good? type yes to confirm: "
        answer = await asyncio.to_thread(input, question)
    except EOFError:
        answer = ""
    if answer.strip().lower() != "yes":
        raise Failed("nothing erased", TROUBLE)


async def prune(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    removed = dict(await prune_now(backend, settings.retention))
    emit(
        args,
        removed,
        lambda r: (
            "pruned: "
            + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(r.items())) or "nothing")
        ),
    )
    return OK


COMMANDS = {"forget": forget, "prune": prune}
