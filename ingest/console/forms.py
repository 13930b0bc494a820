"""Operator input, checked: the problems filter, the selection, names and reasons.

Everything a form or query string sends is parsed here into the types `ingest.ops`
takes; what does not parse raises `FormError` with a sentence for the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest.ops import kill_switch
from ingest.ops.audit import MAX_NAME, has_control
from ingest.ops.replay import ReplayFilter

STATE_CHOICES = {"held": ("held",), "failed": ("failed",), "both": ("held", "failed")}
MAX_REASON = 300
MAX_SELECTED = 500


class FormError(ValueError):
    """What the operator typed cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class ProblemQuery:
    """The problems filter as the form shows it, and as `ingest.ops.replay` takes it."""

    state: str = "held"
    reason: str = ""
    since: str = ""

    @property
    def filter(self) -> ReplayFilter:
        return ReplayFilter(
            states=STATE_CHOICES[self.state],
            since=_parse_since(self.since) if self.since else None,
            reasons=(self.reason,) if self.reason else (),
        )

    def selected(self, dedup_ids: list[str]) -> ReplayFilter:
        """The events picked by hand, whatever their state (only held/failed replay)."""
        return ReplayFilter(states=STATE_CHOICES["both"], dedup_ids=tuple(dedup_ids))


def problem_query(params: Mapping[str, str]) -> ProblemQuery:
    state = params.get("state", "held")  # absent: the default; anything else is checked
    if state not in STATE_CHOICES:
        raise FormError(f"state is one of {', '.join(STATE_CHOICES)}")
    reason = (params.get("reason") or "").strip()
    if has_control(reason) or has_control(params.get("since") or ""):
        raise FormError("a filter cannot contain control characters")
    if len(reason) > MAX_REASON:
        raise FormError(f"a reason has at most {MAX_REASON} characters")
    since = (params.get("since") or "").strip()
    if since:
        _parse_since(since)
    return ProblemQuery(state, reason, since)


def _parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FormError(f"since is not a date and time: {value!r}") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise FormError(f"since is out of range (years 1 to 9999 in UTC): {value!r}") from None


def selected_ids(values: list[str]) -> list[str]:
    ids = [v.strip() for v in values if v.strip()]
    if not ids:
        raise FormError("select at least one event")
    if len(ids) > MAX_SELECTED:
        raise FormError(f"select at most {MAX_SELECTED} events at a time")
    return ids


def operator_name(value: str | None) -> str:
    """A name for the audit trail: printable, 1 to 100 characters."""
    name = " ".join((value or "").split())
    if not 1 <= len(name) <= MAX_NAME:
        raise FormError(f"your name: 1 to {MAX_NAME} characters")
    if has_control(name):
        raise FormError("your name cannot contain control characters")
    return name


def reason(value: str | None) -> str:
    """A kill-switch reason, by the rule `ingestctl` applies too."""
    try:
        return kill_switch.checked_reason(value or "")
    except kill_switch.BadReason as exc:
        raise FormError(str(exc)) from None
