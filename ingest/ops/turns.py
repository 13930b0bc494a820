"""Turns for operators: `ingestctl turns [--state …]`, and replaying held, failed and
limited turns (`ingestctl replay --held/--failed/--limited`, and the console).

A replay is one statement (`ingest_turn_replay`): the turns go back to `pending`, marked
`replayed`, and the relay POSTs them directly, re-signed (never under a deduplication ID
QStash may still hold); `webhook-id` stays the turn id. Refused while the kill switch holds.
"""

from __future__ import annotations

import argparse
from typing import Any

from ingest.ops import audit
from ingest.ops.output import OK, emit
from storage import Backend, DataRejected

STATES = ("open", "pending", "published", "delivered", "held", "limited", "failed")
REPLAYABLE = ("held", "failed", "limited")


class TurnReplayRefused(Exception):
    """The database refused the replay (the kill switch holds)."""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    turns = sub.add_parser("turns", parents=[common], help="conversation turns, newest first")
    turns.add_argument("--state", choices=STATES, help="only turns in this state")
    turns.add_argument("--limit", type=int, default=50)


async def listing(
    backend: Backend,
    *,
    state: str | None = None,
    account: str | None = None,
    customer: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Counts by state and the latest turns (ids and mids, never message text)."""
    found: dict[str, Any] = await backend.call(
        "ingest_turns",
        {"p_state": state, "p_account": account, "p_customer": customer, "p_limit": limit},
    )
    return found


async def replay(
    backend: Backend, actor: audit.Actor, states: tuple[str, ...], *, dry_run: bool = False
) -> int:
    """Send the turns in `states` again, once each; how many (would) go."""
    if not states or not set(states) <= set(REPLAYABLE):
        raise ValueError(f"turn replay takes states among {', '.join(REPLAYABLE)}")
    try:
        answer = await backend.call(
            "ingest_turn_replay", {"p_states": list(states), "p_dry_run": dry_run}
        )
    except DataRejected as exc:
        raise TurnReplayRefused(str(exc)) from exc
    if dry_run:
        return int(answer["would_replay"])
    count = int(answer["replayed"])
    if count:  # a replay that found no turn changed nothing (`replay` audits the events')
        await audit.record(backend, actor, "turn_replay", {"states": list(states), "turns": count})
    return count


async def command(args: argparse.Namespace, backend: Backend) -> int:
    found = await listing(backend, state=args.state, limit=args.limit)
    emit(args, found, _human)
    return OK


def _human(found: dict[str, Any]) -> str:
    counts = found["counts"]
    lines = ["turns: " + (", ".join(f"{s} {counts[s]}" for s in STATES if s in counts) or "none")]
    for t in found["turns"]:
        lines.append(
            f"{t['turn_id']}  {t['state']:<9} seq {t['seq'] or '-':<3} "
            f"{t['messages']} msg  {t['closed_because'] or '-':<12} "
            f"attempts {t['attempts']}  {t['reason'] or ''}"
        )
    return "\n".join(lines)
