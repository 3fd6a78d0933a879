"""Lifecycle and stickiness computed from scratch in plain Python over the events as sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tests.support.activity_events import ordinal
from tests.support.product_events import ProductEvent

Matcher = Callable[[ProductEvent], bool]


def active_periods(events: list[ProductEvent], links: dict[str, str], match: Matcher, grain: str, timezone: str,
                   until: int) -> dict[str, set[int]]:  # fmt: skip
    active: dict[str, set[int]] = {}
    for e in events:
        p = ordinal(e.occurred_at, grain, timezone)
        if match(e) and p <= until:
            active.setdefault(e.key(links), set()).add(p)
    return active


def lifecycle(events: list[ProductEvent], links: dict[str, str], *, timezone: str, grain: str, periods: list[int],
              now: datetime, match: Matcher) -> list[tuple[int, int, int, int] | None]:  # fmt: skip
    """Per period ordinal: (new, returning, resurrecting, dormant <= 0), None when not begun."""
    current = ordinal(now, grain, timezone)
    active = active_periods(events, links, match, grain, timezone, current)
    rows: list[tuple[int, int, int, int] | None] = []
    for q in periods:
        if q > current:
            rows.append(None)
            continue
        new = returning = resurrecting = dormant = 0
        for seen in active.values():
            if q in seen:
                if min(seen) == q:
                    new += 1
                elif q - 1 in seen:
                    returning += 1
                else:
                    resurrecting += 1
            elif q - 1 in seen:
                dormant -= 1
        rows.append((new, returning, resurrecting, dormant))
    return rows


def stickiness(events: list[ProductEvent], links: dict[str, str], *, timezone: str, grain: str, periods: list[int],
               now: datetime, match: Matcher) -> list[int]:  # fmt: skip
    """persons[n - 1]: persons active in exactly n of the periods (1..len(periods))."""
    current = ordinal(now, grain, timezone)
    active = active_periods(events, links, match, grain, timezone, current)
    counts = [0] * len(periods)
    for seen in active.values():
        n = len(seen & set(periods))
        if n:
            counts[n - 1] += 1
    return counts
