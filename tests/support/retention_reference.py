"""Retention computed from scratch in plain Python over the events as sent (not the SQL
under test): persons by tests.support.product_events (identify links followed), periods by
tests.support.activity_events.ordinal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tests.support.activity_events import ordinal
from tests.support.product_events import ProductEvent, ordered

Matcher = Callable[[ProductEvent], bool]
OTHER = "$other"


def retention(
    events: list[ProductEvent], links: dict[str, str], *, timezone: str, grain: str, cohorts: list[int], periods: int,
    now: datetime, start: Matcher, back: Matcher, first_time: bool, on_or_after: bool,
    breakdown: str | None = None, limit: int = 10,
) -> dict[object, list[list[int | None]]]:  # fmt: skip
    """{None: the grid} or, with a breakdown key, {value (None: missing, OTHER): grid}; a grid
    has one row per cohort ordinal in `cohorts`, each periods + 1 cells, None: not begun."""
    current = ordinal(now, grain, timezone)
    starts: dict[str, dict[int, object]] = {}  # person -> cohort ordinal -> first start value there
    firsts: dict[str, tuple[int, object]] = {}
    returns: dict[str, set[int]] = {}
    for e in ordered(events):
        person = e.key(links)
        p = ordinal(e.occurred_at, grain, timezone)
        if p > current:
            continue
        if start(e):
            value = e.properties.get(breakdown) if breakdown else None
            starts.setdefault(person, {}).setdefault(p, value)
            firsts.setdefault(person, (p, value))
        if back(e):
            returns.setdefault(person, set()).add(p)
    entries: list[tuple[str, int, object]] = []
    for person, periods_started in starts.items():
        if first_time:
            p, value = firsts[person]
            if p in cohorts:
                entries.append((person, p, value))
        else:
            entries += [(person, p, v) for p, v in periods_started.items() if p in cohorts]
    labels: dict[object, object] = {}
    if breakdown:
        totals: dict[object, int] = {}
        for _, _, value in entries:
            totals[value] = totals.get(value, 0) + 1
        top = sorted(totals, key=lambda v: (-totals[v], v is None, str(v)))[:limit]
        labels = {v: (v if v in top else OTHER) for v in totals}
    grids: dict[object, list[list[int | None]]] = {}
    for person, c, value in entries:
        label = labels.get(value) if breakdown else None
        grid = grids.setdefault(label, [[0] * (periods + 1) for _ in cohorts])
        row = grid[cohorts.index(c)]
        row[0] += 1
        back_periods = returns.get(person, set())
        for k in range(1, periods + 1):
            hit = any(q >= c + k for q in back_periods) if on_or_after else (c + k) in back_periods
            row[k] += hit
    for label in list(grids) or [None]:
        grid = grids.setdefault(label, [[0] * (periods + 1) for _ in cohorts])
        for i, c in enumerate(cohorts):
            grid[i] = [v if c + k <= current else None for k, v in enumerate(grid[i])]
    return grids
