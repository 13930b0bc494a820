"""The `ingestctl` commands that act on the pipeline or read its state.

Each is a thin door: it turns arguments into a call of `ingest.ops` (the same call
the console makes) and prints the answer. `relay`, `send-sample` and `migrate` live
beside it (`ingest.ops.relaying`, `ingest.ops.sample`, `ingest.ops.migrate`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ingest.accounts.registry import Registry
from ingest.config.settings import Settings
from ingest.ops import dlq as dead_letters
from ingest.ops import kill_switch as switch
from ingest.ops import replay as replaying
from ingest.ops import turns as turn_ops
from ingest.ops.audit import Actor
from ingest.ops.output import OK, TROUBLE, USAGE, Failed, emit
from ingest.ops.relaying import publishing, relay_until_done, turns_until_done
from storage import Backend

FAILURE_RATE_WARNING = 0.10


def actor(args: argparse.Namespace) -> Actor:
    return Actor(args.by, "cli")


async def kill_switch(args: argparse.Namespace, backend: Backend) -> int:
    if args.action == "activate":
        try:
            state = await switch.activate(backend, actor(args), args.reason, hold=args.hold)
        except switch.BadReason as exc:
            raise Failed(str(exc), USAGE) from exc
    else:
        state = await switch.deactivate(backend, actor(args))
    emit(args, state.raw, lambda _: _switch_line(state))
    return OK


def _switch_line(state: switch.Switch) -> str:
    if not state.active:
        return "kill switch off"
    if state.hold:
        return "kill switch ON (holding: nothing is published or stored until replay)"
    return "kill switch ON (nothing is published; events are stored directly)"


ACCOUNT_FIELDS = ("account_id", "username", "source", "state", "expires_at", "deauthorized_at")
STORED_TOTALS = ("messages", "customers", "messages_today")


async def status(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """Every account is named once, from the account registry: `accounts` holds each one
    with its state (a deauthorised one with `deauthorized_at`), and the human form lists the
    deauthorised ones on their own line instead of as accounts. `ingest_stored_totals` also
    answers a `deauthorized` list; it is left out, since it repeats `accounts`."""
    data = await backend.call("ingest_status", {})
    accounts = [{k: r[k] for k in ACCOUNT_FIELDS} for r in await Registry(backend).overview()]
    totals = await backend.call("ingest_stored_totals", {})
    stored = {k: totals[k] for k in STORED_TOTALS}
    data = {
        **data,
        "qstash_daily_limit": settings.safety.daily_messages,
        "accounts": accounts,
        "stored": stored,
    }

    def human(s: dict[str, Any]) -> str:
        switch_state = "off"
        if s["kill_switch"]:
            mode = "holding" if s["hold"] else "direct"
            switch_state = f"ON, {mode} ({s['reason']}, by {s['changed_by']} at {s['changed_at']})"
        breaker = f"TRIPPED at {s['breaker_tripped_at']}" if s["breaker_tripped"] else "closed"
        oldest = s["oldest_pending_seconds"]
        lines = [
            f"kill switch : {switch_state}",
            f"breaker     : {breaker}",
            f"pending     : {s['pending']}"
            + (f" (oldest {oldest:.1f} s)" if oldest is not None else ""),
            f"held        : {s['held']}",
            f"failed      : {s['failed']}",
            f"QStash today: {s['qstash_messages_today']} of {s['qstash_daily_limit']} messages",
            f"stored      : {stored['messages']} message(s) from {stored['customers']} "
            f"customer(s), {stored['messages_today']} today",
            *(f"account     : {a['account_id']} {a['state'].upper()}"
              + (f" (expires {str(a['expires_at'])[:10]})" if a["expires_at"] else "")
              for a in s["accounts"] if a["state"] != "deauthorized"),
        ]  # fmt: skip
        gone = [a for a in s["accounts"] if a["state"] == "deauthorized"]
        lines.append(
            "deauthorised: "
            + (", ".join(f"{a['account_id']} (at {a['deauthorized_at']})" for a in gone) or "none")
        )
        return "\n".join(lines)

    emit(args, data, human)
    return OK


async def monitor(args: argparse.Namespace, backend: Backend) -> int:
    data = await backend.call("ingest_monitor", {"p_days": args.days})

    def human(m: dict[str, Any]) -> str:
        header = f"{'day':<12}{'published':>10}{'direct':>8}{'held':>6}{'failed':>8}{'pending':>9}"
        rows = [
            f"{d['day']:<12}{d['published']:>10}{d['direct']:>8}{d['held']:>6}{d['failed']:>8}{d['pending']:>9}"
            for d in m["daily"]
        ]
        senders = ", ".join(f"{s['sender_id']} ({s['events']})" for s in m["top_senders"]) or "-"
        rate = float(m["failure_rate"])
        lines = [header, *rows, f"top senders : {senders}", f"failure rate: {rate:.1%}"]
        if rate > FAILURE_RATE_WARNING:
            lines.append(f"WARNING: failure rate above {FAILURE_RATE_WARNING:.0%}")
        lines.append(
            '(duplicates cost no ledger write; see ingest_admissions_total{outcome="duplicate"})'
        )
        return "\n".join(lines)

    emit(args, data, human)
    return TROUBLE if float(data["failure_rate"]) > FAILURE_RATE_WARNING else OK


async def replay(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """Return held/failed rows (and held/failed/limited turns) to pending in one statement
    each, then (unless --no-wait) relay them here. Interrupted at any point, the relay of
    any instance finishes the job."""
    states = [s for s, wanted in (("held", args.held), ("failed", args.failed)) if wanted]
    events = bool(states) or not args.limited
    turn_states = tuple(states) + (("limited",) if args.limited else ()) or ("held",)
    which = replaying.ReplayFilter(
        states=tuple(states) or ("held",),
        since=args.since,
        reasons=tuple(args.reason or ()),
        dedup_ids=tuple(args.dedup_id or ()),
    )
    if args.dry_run:
        would = await replaying.count(backend, which) if events else 0
        turns = await turn_ops.replay(backend, actor(args), turn_states, dry_run=True)
        refused = await replaying.refusal(backend)
        data: dict[str, Any] = {
            "would_replay": would,
            **({"would_replay_turns": turns} if turns else {}),
            **({"refused": refused} if refused else {}),
        }
        emit(args, data, _dry_run_line)
        return OK
    if not args.no_wait:  # decided before anything returns to pending
        settings = publishing(settings)
    try:
        done = await replaying.replay(backend, actor(args), which) if events else None
        turns = await turn_ops.replay(backend, actor(args), turn_states)
    except (replaying.ReplayRefused, turn_ops.TurnReplayRefused) as exc:
        raise Failed(f"refused: {exc}") from exc
    data = {"replayed": done.count if done else 0}
    if turns:  # named only when there were some: the answer's shape stays what it was
        data["replayed_turns"] = turns
    if not args.no_wait and done is not None and done.count:
        settled = await relay_until_done(backend, settings)
        data["settled"] = dict(settled.settled)
    if not args.no_wait and turns:
        data["turns_settled"] = dict(await turns_until_done(backend, settings))
    emit(args, data, _replay_line)
    failed = data.get("settled", {}).get("failed") or data.get("turns_settled", {}).get("failed")
    return TROUBLE if failed else OK


def _dry_run_line(data: dict[str, Any]) -> str:
    line = f"would replay {data['would_replay']} event(s)"
    if "would_replay_turns" in data:
        line += f", {data['would_replay_turns']} turn(s)"
    return line + (f", but refused now: {data['refused']}" if "refused" in data else "")


def _replay_line(data: dict[str, Any]) -> str:
    line = f"replayed {data['replayed']} event(s)"
    if "settled" in data:
        line += ": " + (", ".join(f"{k} {v}" for k, v in sorted(data["settled"].items())) or "-")
    if "replayed_turns" in data:
        line += f"; {data['replayed_turns']} turn(s)"
    if "turns_settled" in data:
        settled = data["turns_settled"]
        line += ": " + (", ".join(f"{k} {v}" for k, v in sorted(settled.items())) or "-")
    return line


async def dlq(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.components import make_http_client

    async with make_http_client() as http:
        queue = dead_letters.Dlq.from_settings(settings, http)
        if queue is None:
            raise Failed("QSTASH_TOKEN is not set: there is no QStash DLQ to read", USAGE)
        try:
            if args.action == "list":
                await _list_dlq(args, queue)
            else:
                await _redrive(args, queue, settings)
        except dead_letters.DlqError as exc:
            raise Failed(str(exc)) from exc
    return OK


async def _list_dlq(args: argparse.Namespace, queue: dead_letters.Dlq) -> None:
    items = [
        {"dlq_id": m.dlq_id, "message_id": m.message_id, "status": m.status, "url": m.url,
         "created_at": m.created_at}
        for m in await queue.list()
    ]  # fmt: skip
    emit(
        args,
        items,
        lambda xs: (
            "\n".join(f"{x['dlq_id']}  {x['status']}  {x['url']}" for x in xs) or "DLQ is empty"
        ),
    )


async def _redrive(args: argparse.Namespace, queue: dead_letters.Dlq, settings: Settings) -> None:
    from ingest.ops.relaying import open_backend

    async with open_backend(settings) as backend:  # the audit trail is in the database
        message_id = await queue.redrive(backend, actor(args), args.dlq_id)
    emit(args, {"messageId": message_id}, lambda a: f"redriven as {a['messageId']}")
