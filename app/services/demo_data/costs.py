"""The demo organization's running costs: hosting and a scheduling tool every month, ads that
grow with the business, and quarterly bookkeeping."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from app.services.demo_data.timeline import MONTHLY_GROWTH, Timeline
from app.timebuckets import local_date

MARKETING_MINOR_NOW = 250000  # monthly ads at the end of the history


@dataclass(frozen=True, slots=True)
class CostEntry:
    incurred_on: date
    category: str
    amount_minor: int
    description: str
    campaign: str | None = None  # the UTM campaign the money went to


def monthly_costs(timeline: Timeline, *, seed: int = 7) -> list[CostEntry]:
    """Every cost of the timeline's months up to its last day, oldest first."""
    rng = random.Random(seed * 31 + 5)  # its own stream, as in money.py
    last = local_date(timeline.end, timeline.timezone)
    months = timeline.month_starts()
    entries: list[CostEntry] = []
    for age, month in enumerate(reversed(months)):
        label = f"{month:%B %Y}"
        ads = int(MARKETING_MINOR_NOW * (1 + MONTHLY_GROWTH) ** -age * rng.uniform(0.85, 1.1)) // 1000 * 1000
        entries += [
            CostEntry(month.replace(day=1), "subscriptions", 29000, f"Hosting, {label}"),
            CostEntry(month.replace(day=5), "tools", 4900, f"Scheduling tool, {label}"),
            CostEntry(month.replace(day=12), "marketing", ads, f"Search ads, {label}", campaign="brand"),
        ]
        if month.month % 3 == 1:
            entries.append(CostEntry(month.replace(day=20), "other", 45000, f"Bookkeeping, quarter to {label}"))
    return sorted((e for e in entries if e.incurred_on <= last), key=lambda e: (e.incurred_on, e.category))
