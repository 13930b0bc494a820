"""How close Meta says we are to its rate limits, from the headers of every answer.

`X-App-Usage: {"call_count": 28, "total_time": 25, "total_cputime": 25}` (percentages,
throttled at 100) and `X-Business-Use-Case-Usage: {"<object id>": [{"type": "instagram",
"call_count": 100, "total_cputime": 25, "total_time": 25,
"estimated_time_to_regain_access": 19}]}`, where the estimate is in MINUTES (Meta's
rate-limiting page:
https://developers.facebook.com/docs/graph-api/overview/rate-limiting). A header we cannot
read says nothing: it never fails a call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

APP_USAGE = "x-app-usage"
BUSINESS_USAGE = "x-business-use-case-usage"
NEAR_LIMIT_PERCENT = 90  # from here on, slow down before Meta throttles us
NEAR_LIMIT_PAUSE_SECONDS = 60.0
_PERCENTAGES = ("call_count", "total_time", "total_cputime")


@dataclass(frozen=True, slots=True)
class Usage:
    """The highest percentage of any limit, and how long Meta says to wait (seconds)."""

    percent: float = 0.0
    regain_seconds: float = 0.0

    @property
    def pause_seconds(self) -> float:
        """How long to stop calling: Meta's estimate, or a minute when close to a limit."""
        if self.regain_seconds > 0:
            return self.regain_seconds
        return NEAR_LIMIT_PAUSE_SECONDS if self.percent >= NEAR_LIMIT_PERCENT else 0.0


def read_usage(headers: Mapping[str, str]) -> Usage:
    percent, regain_minutes = 0.0, 0.0
    for entry in _entries(headers):
        for key in _PERCENTAGES:
            percent = max(percent, _number(entry.get(key)))
        regain_minutes = max(regain_minutes, _number(entry.get("estimated_time_to_regain_access")))
    return Usage(percent=percent, regain_seconds=regain_minutes * 60.0)


def _entries(headers: Mapping[str, str]) -> Iterator[Mapping[str, Any]]:
    app = _json(headers.get(APP_USAGE))
    if isinstance(app, dict):
        yield app
    business = _json(headers.get(BUSINESS_USAGE))
    if isinstance(business, dict):
        for usages in business.values():
            for usage in usages if isinstance(usages, list) else [usages]:
                if isinstance(usage, dict):
                    yield usage


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if value >= 0 else 0.0
