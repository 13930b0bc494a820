"""QStash spend per day against the daily budget, as SVG drawn on the server.

The template writes the SVG from this geometry with presentation attributes and
classes only (no `style`), so the strict Content-Security-Policy holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.console.reads import SpendDay

WIDTH, HEIGHT = 720, 200
LEFT, BOTTOM, TOP = 48, 24, 12
GAP = 2


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: str
    messages: int
    over: bool


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    left: int
    baseline: float
    bars: tuple[Bar, ...]
    budget: int
    budget_y: float
    ticks: tuple[Tick, ...]
    first_day: str
    last_day: str


def spend_chart(days: list[SpendDay], budget: int) -> BarChart:
    """Bars scaled so the budget line and the tallest day both fit, with headroom."""
    top = max([budget, *(d.messages for d in days)]) * 1.1 or 1.0
    plot = HEIGHT - BOTTOM - TOP
    baseline = float(HEIGHT - BOTTOM)

    def y(value: float) -> float:
        return round(baseline - value / top * plot, 2)

    slot = (WIDTH - LEFT) / max(len(days), 1)
    bars = tuple(
        Bar(
            x=round(LEFT + i * slot + GAP / 2, 2),
            y=y(d.messages),
            width=round(slot - GAP, 2),
            height=round(baseline - y(d.messages), 2),
            day=d.day,
            messages=d.messages,
            over=d.messages > budget,
        )
        for i, d in enumerate(days)
    )
    ticks = tuple(Tick(y(v), f"{int(v):,}") for v in (0, top / 2 / 1.1, top / 1.1))
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        baseline=baseline,
        bars=bars,
        budget=budget,
        budget_y=y(budget),
        ticks=ticks,
        first_day=days[0].day if days else "",
        last_day=days[-1].day if days else "",
    )
