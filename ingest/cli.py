"""`ingestctl`: operate the service from a shell (and from cron, with `--json` and exit codes).

Exit codes: 0 done; 1 the operation was refused or found trouble (replay while the
kill switch is on, a failure rate above 10%, a QStash call refused); 2 bad usage or
configuration; 3 the database is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from ingest.logging import configure_logging
from ingest.relay import PassResult, Relay
from ingest.settings import Secret, Settings, load_or_exit
from storage import Backend, DataRejected, StorageUnavailable

OK, TROUBLE, USAGE, UNAVAILABLE = 0, 1, 2, 3
FAILURE_RATE_WARNING = 0.10
SAMPLE = {
    "object": "instagram",
    "entry": [
        {
            "id": "17841400000000001",
            "time": 1732500000123,
            "messaging": [
                {
                    "sender": {"id": "1234567890123456"},
                    "recipient": {"id": "17841400000000001"},
                    "timestamp": 1732500000001,
                    "message": {
                        "mid": "m_ingestctl_sample",
                        "text": "Hi! Is the blue one available?",
                    },
                }
            ],
        }
    ],
}


class Failed(Exception):
    """The command ran but must exit non-zero; the message is what went wrong."""

    def __init__(self, message: str, code: int = TROUBLE) -> None:
        super().__init__(message)
        self.code = code


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human(data))


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    from ingest.app import make_backend

    if settings.uses_embedded_database:
        from storage.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(settings.data_dir / "pg")
        settings = dataclasses.replace(settings, database_url=Secret(server.url()))
    backend = make_backend(settings)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


# --- commands ---------------------------------------------------------------------------


async def kill_switch(args: argparse.Namespace, backend: Backend) -> int:
    active = args.action == "activate"
    state = await backend.call(
        "ingest_set_kill_switch",
        {
            "p_active": active,
            "p_reason": args.reason if active else None,
            "p_by": args.by,
            "p_hold": active and args.hold,
        },
    )
    emit(args, state, _switch_line)
    return OK


def _switch_line(s: dict[str, Any]) -> str:
    if not s["kill_switch"]:
        return "kill switch off"
    if s.get("hold"):
        return "kill switch ON (holding: nothing is published or stored until replay)"
    return "kill switch ON (nothing is published; events are stored directly)"


async def status(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    data = await backend.call("ingest_status", {})

    data = {**data, "qstash_daily_limit": settings.safety.daily_messages}

    def human(s: dict[str, Any]) -> str:
        switch = "off"
        if s["kill_switch"]:
            mode = "holding" if s["hold"] else "direct"
            switch = f"ON, {mode} ({s['reason']}, by {s['changed_by']} at {s['changed_at']})"
        oldest = s["oldest_pending_seconds"]
        lines = [
            f"kill switch : {switch}",
            f"breaker     : {_breaker(s)}",
            f"pending     : {s['pending']}"
            + (f" (oldest {oldest:.1f} s)" if oldest is not None else ""),
            f"held        : {s['held']}",
            f"failed      : {s['failed']}",
            f"QStash today: {s['qstash_messages_today']} of {s['qstash_daily_limit']} messages",
        ]
        return "\n".join(lines)

    emit(args, data, human)
    return OK


def _breaker(s: dict[str, Any]) -> str:
    return f"TRIPPED at {s['breaker_tripped_at']}" if s["breaker_tripped"] else "closed"


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
            '(duplicates cost no ledger write; see ingest_admissions{outcome="duplicate"})'
        )
        return "\n".join(lines)

    emit(args, data, human)
    return TROUBLE if float(data["failure_rate"]) > FAILURE_RATE_WARNING else OK


async def replay(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """Return held/failed rows to pending in one statement, then (unless --no-wait) relay
    them here. Interrupted at any point, the relay of any instance finishes the job."""
    states = [s for s, wanted in (("held", args.held), ("failed", args.failed)) if wanted]
    params = {
        "p_states": states or ["held"],
        "p_since": args.since or "-infinity",
        "p_reasons": args.reason or None,
        "p_dedup_ids": args.dedup_id or None,
        "p_dry_run": args.dry_run,
    }
    answer = await backend.call("ingest_replay", params)
    if args.dry_run:
        emit(args, answer, lambda a: f"would replay {a['would_replay']} event(s)")
        return OK
    data: dict[str, Any] = {"replayed": answer["replayed"]}
    if not args.no_wait and answer["replayed"]:
        settled = await _relay_until_done(backend, settings)
        data["settled"] = dict(settled.settled)
    emit(args, data, _replay_line)
    return TROUBLE if data.get("settled", {}).get("failed") else OK


def _replay_line(data: dict[str, Any]) -> str:
    line = f"replayed {data['replayed']} event(s)"
    if "settled" in data:
        line += ": " + (", ".join(f"{k} {v}" for k, v in sorted(data["settled"].items())) or "-")
    return line


async def relay(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """Run the relay in this process: until the backlog is empty (--once) or forever."""
    if args.once:
        done = await _relay_until_done(backend, settings)
        emit(args, dict(done.settled), lambda d: "settled: " + (str(d) if d else "nothing"))
        return OK
    async with _relay(backend, settings) as running:
        print("relaying; Ctrl-C to stop", file=sys.stderr)
        await running.run()
    return OK


async def _relay_until_done(backend: Backend, settings: Settings) -> PassResult:
    async with _relay(backend, settings) as running:
        return await running.drain()


@asynccontextmanager
async def _relay(backend: Backend, settings: Settings) -> AsyncIterator[Relay]:
    from consumers.processing import Processor
    from ingest.app import make_http_client, make_relay

    http = make_http_client()
    try:
        yield make_relay(settings, backend, Processor(backend), http)
    finally:
        await http.aclose()


async def dlq(args: argparse.Namespace, settings: Settings) -> int:
    from qstash import AsyncQStash
    from qstash.errors import QStashError

    if settings.qstash_token is None:
        raise Failed("QSTASH_TOKEN is not set: there is no QStash DLQ to read", USAGE)
    client = AsyncQStash(settings.qstash_token.reveal(), retry=False, base_url=settings.qstash_url)
    try:
        if args.action == "list":
            page = await client.dlq.list(filter={"label": settings.qstash_label})
            items = [
                {"dlq_id": m.dlq_id, "message_id": m.message_id, "status": m.response_status,
                 "url": m.url, "created_at": m.created_at}
                for m in page.messages
            ]  # fmt: skip
            emit(
                args,
                items,
                lambda xs: (
                    "\n".join(f"{x['dlq_id']}  {x['status']}  {x['url']}" for x in xs)
                    or "DLQ is empty"
                ),
            )
        else:
            # qstash-py has no retry call: POST /v2/dlq/retry/{dlqId} (QSTASH.md).
            answer = await client.http.request(path=f"/v2/dlq/retry/{args.dlq_id}", method="POST")
            emit(args, answer, lambda a: f"redriven as {a.get('messageId')}")
    except QStashError as exc:
        raise Failed(f"QStash refused: {exc}") from exc
    finally:
        await client.http._client.aclose()
    return OK


async def send_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.meta_signature import expected_signature

    body = json.dumps(SAMPLE, separators=(",", ":")).encode()
    secret = settings.meta_app_secrets[0].reveal()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": expected_signature(body, secret),
    }
    url = args.url.rstrip("/") + "/api/webhooks/instagram"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Failed(f"could not reach {url}: {exc}", UNAVAILABLE) from exc
    emit(
        args,
        {"status": response.status_code, "answer": response.json()},
        lambda d: f"{d['status']} {d['answer']}",
    )
    return OK if response.status_code == 200 else TROUBLE


# --- wiring -----------------------------------------------------------------------------


def _iso_time(value: str) -> str:
    """An ISO 8601 time (`2026-12-01`, `2026-12-01T10:00:00+00:00`), checked here so a
    typo is a usage error, not a database error."""
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ingestctl", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = root.add_subparsers(dest="command", required=True)

    ks = sub.add_parser("kill-switch", help="stop publishing to QStash (or start again)")
    ks_sub = ks.add_subparsers(dest="action", required=True)
    act = ks_sub.add_parser("activate", parents=[common])
    act.add_argument("reason")
    act.add_argument("--by", default="ingestctl")
    act.add_argument(
        "--hold", action="store_true", help="store nothing either: hold events for `replay`"
    )
    deact = ks_sub.add_parser("deactivate", parents=[common])
    deact.add_argument("--by", default="ingestctl")

    sub.add_parser("status", parents=[common], help="switch, breaker, counts")
    mon = sub.add_parser("monitor", parents=[common], help="daily usage from the ledger")
    mon.add_argument("--days", type=int, default=7)

    rep = sub.add_parser("replay", parents=[common], help="send held/failed events again, once")
    rep.add_argument("--held", action="store_true", help="held events (the default)")
    rep.add_argument("--failed", action="store_true", help="events that could not be stored")
    rep.add_argument("--since", type=_iso_time, help="only events admitted since (ISO 8601)")
    rep.add_argument("--reason", action="append", help="only rows with this reason (repeatable)")
    rep.add_argument("--dedup-id", action="append", help="only this event (repeatable)")
    rep.add_argument("--dry-run", action="store_true", help="count, change nothing")
    rep.add_argument(
        "--no-wait", action="store_true", help="leave the relaying to the running service"
    )

    rel = sub.add_parser("relay", parents=[common], help="run the relay in this process")
    rel.add_argument("--once", action="store_true", help="stop when nothing is left to settle")

    dl = sub.add_parser("dlq", help="QStash's dead-letter queue, filtered by our label")
    dl_sub = dl.add_subparsers(dest="action", required=True)
    dl_sub.add_parser("list", parents=[common])
    red = dl_sub.add_parser("redrive", parents=[common])
    red.add_argument("dlq_id")

    smp = sub.add_parser("send-sample", parents=[common], help="POST a signed sample webhook")
    smp.add_argument("--url", default="http://127.0.0.1:8000")

    mig = sub.add_parser("migrate", parents=[common], help="apply supabase/migrations")
    mig.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the database")
    mig.add_argument("--list", action="store_true", help="applied and pending; apply nothing")

    from ingest.cli_reconcile import add_parser as add_reconcile

    add_reconcile(sub, common)
    return root


async def run(args: argparse.Namespace, settings: Settings) -> int:
    needs_db: dict[str, Callable[..., Awaitable[int]]] = {
        "kill-switch": kill_switch, "monitor": monitor,
    }  # fmt: skip
    needs_settings: dict[str, Callable[..., Awaitable[int]]] = {
        "status": status, "replay": replay, "relay": relay,
    }  # fmt: skip
    if args.command in needs_db:
        async with open_backend(settings) as backend:
            return await needs_db[args.command](args, backend)
    if args.command in needs_settings:
        async with open_backend(settings) as backend:
            return await needs_settings[args.command](args, backend, settings)
    from ingest.cli_migrate import migrate
    from ingest.cli_reconcile import reconcile

    handlers = {"dlq": dlq, "send-sample": send_sample, "migrate": migrate, "reconcile": reconcile}
    return await handlers[args.command](args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    settings = load_or_exit()
    configure_logging(settings.log_level, stream=sys.stderr)
    try:
        return asyncio.run(run(args, settings))
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
