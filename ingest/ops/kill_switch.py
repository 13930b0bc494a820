"""The kill switch, by hand: `ingestctl kill-switch …` and the console's switch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.ops import audit
from storage import Backend

MAX_REASON = 300


class BadReason(ValueError):
    """A reason that cannot be shown to everyone and kept in the audit trail as typed."""


def checked_reason(value: str) -> str:
    """The reason, whitespace collapsed. Control and format characters are refused: a
    terminal escape or a bidi override would rewrite what `ingestctl status` and the
    console show."""
    text = " ".join(value.split())
    if not text:
        raise BadReason("say why: the reason is shown to everyone and kept in the audit trail")
    if len(text) > MAX_REASON:
        raise BadReason(f"a reason has at most {MAX_REASON} characters")
    if audit.has_control(text):
        raise BadReason("a reason cannot contain control or format characters")
    return text


@dataclass(frozen=True, slots=True)
class Switch:
    """The switch as `ingest_set_kill_switch` left it (its row of `safety_state`)."""

    active: bool
    hold: bool
    reason: str | None
    changed_by: str | None
    changed_at: str | None
    raw: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Switch:
        return cls(
            active=bool(row["kill_switch"]),
            hold=bool(row["kill_switch"] and row.get("hold")),
            reason=row.get("reason"),
            changed_by=row.get("changed_by"),
            changed_at=row.get("changed_at"),
            raw=row,
        )


async def activate(backend: Backend, actor: audit.Actor, reason: str, *, hold: bool) -> Switch:
    """Stop publishing: events are stored directly, or with `hold` kept as `held` for replay."""
    reason = checked_reason(reason)
    switch = await _set(backend, actor, active=True, reason=reason, hold=hold)
    mode = "hold" if hold else "direct"
    await audit.record(backend, actor, "kill_switch.activate", {"reason": reason, "mode": mode})
    return switch


async def deactivate(backend: Backend, actor: audit.Actor) -> Switch:
    """Publish again. Releases nothing held (that is `replay`); restarts the breaker's window."""
    switch = await _set(backend, actor, active=False, reason=None, hold=False)
    await audit.record(backend, actor, "kill_switch.deactivate", {})
    return switch


async def _set(
    backend: Backend, actor: audit.Actor, *, active: bool, reason: str | None, hold: bool
) -> Switch:
    row = await backend.call(
        "ingest_set_kill_switch",
        {"p_active": active, "p_reason": reason, "p_by": actor.name, "p_hold": hold},
    )
    return Switch.from_row(row)
