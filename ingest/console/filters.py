"""Jinja filters: times and durations as an operator reads them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ingest.ops.audit import visible


def when(value: str | None) -> str:
    """`2026-12-02T11:11:12.345+01:00` → `2026-12-02 10:11:12 UTC` (the database's ISO)."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def percent(share: float) -> str:
    return f"{share:.0%}"


def capitalize_first(text: str) -> str:
    """A sentence from the database's lower-case words: only the first letter changes."""
    return text[:1].upper() + text[1:]


def detail(value: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An audit row's detail as `name: value` pairs a person reads (lists joined, nested
    objects as `key value` pairs), control characters shown, never raw JSON."""

    def plain(item: Any) -> str:
        if isinstance(item, Mapping):
            return ", ".join(f"{k.replace('_', ' ')} {plain(v)}" for k, v in item.items())
        if isinstance(item, list | tuple):
            return ", ".join(plain(v) for v in item) or "none"
        if isinstance(item, bool):
            return "yes" if item else "no"
        return visible("—" if item is None else str(item))

    return [(name.replace("_", " "), plain(item)) for name, item in value.items()]


def safe_link(url: str | None) -> str | None:
    """An attachment's URL when it may be a link (http or https), else None: the URL
    comes from a payload, and a `javascript:` one must never become a link."""
    if not url or not url.isprintable():
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when, "duration": duration, "percent": percent, "visible": visible,
    "capitalize_first": capitalize_first, "detail": detail, "safe_link": safe_link,
}  # fmt: skip


def millis(value: int | None) -> str:
    """Milliseconds since the epoch (QStash's times) as `when` writes times."""
    if value is None:
        return "—"
    return when(datetime.fromtimestamp(value / 1000, UTC).isoformat())


FILTERS["millis"] = millis
