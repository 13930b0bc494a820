"""`ingestctl forget`, `ingestctl prune`, `ingestctl accounts`: privacy from a shell.

`forget IGSID` erases one customer (README: "Privacy") and prints what it removed;
`--dry-run` counts only. The audit trail records that an erasure happened and what it
removed, never whom (the trail outlives the person). `prune` applies the retention
periods now. (`accounts`: `ingest.ops.accounts`.)
"""

from __future__ import annotations

import argparse
from typing import Any

from ingest.config.settings import Settings
from ingest.lifecycle.retention import prune as prune_now
from ingest.ops import audit
from ingest.ops.output import OK, emit
from storage import Backend


def add_parsers(sub: Any, common: argparse.ArgumentParser, acting: argparse.ArgumentParser) -> None:
    forget = sub.add_parser(
        "forget", parents=[common, acting], help="erase one customer (profile, messages, …)"
    )
    forget.add_argument("igsid", help="the customer's Instagram-scoped id")
    forget.add_argument("--account", help="only under this business account")
    forget.add_argument("--dry-run", action="store_true", help="count, erase nothing")
    sub.add_parser("prune", parents=[common], help="apply the retention periods now")


async def forget(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    removed = await backend.call(
        "ig_forget",
        {"p_igsid": args.igsid, "p_account": args.account, "p_dry_run": args.dry_run},
    )
    if not args.dry_run:
        await audit.record(backend, audit.Actor(args.by, "cli"), "forget", {"removed": removed})
    verb = "would remove" if args.dry_run else "removed"
    emit(args, removed, lambda r: f"{verb}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.items())))
    return OK


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
