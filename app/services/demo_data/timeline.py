"""The demo's calendar: which local days and months its history covers, and how busy each day is."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from app.timebuckets import as_utc, local_date, local_midnight

HISTORY_MONTHS = 13  # whole calendar months before the current one
MONTHLY_GROWTH = 0.03
DAYS_PER_MONTH = 30.44
# Monday first: a marketplace for bookable providers is busiest towards the weekend.
WEEKDAY_WEIGHTS = (0.88, 0.9, 0.94, 0.98, 1.08, 1.22, 1.0)
DAY_NOISE = 0.08  # standard deviation of a day's volume around its expectation


@dataclass(frozen=True, slots=True)
class Day:
    """One local day of the history."""

    date: date
    start: datetime  # UTC instant of the local midnight
    activity: float  # expected volume relative to an average day at the end of the history

    def at(self, hours: float) -> datetime:
        """The instant `hours` after the local midnight."""
        return self.start + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class Timeline:
    """[start, end) in a time zone. `end` is exclusive: the moment of seeding for the demo
    organization (so no event is in the future), the suspension for the closed shop."""

    start: datetime
    end: datetime
    timezone: str

    @classmethod
    def ending(cls, end: datetime, *, months: int = HISTORY_MONTHS, timezone: str = "UTC") -> Timeline:
        """From the local midnight of the 1st of the month `months` months before `end`'s, so
        every one of those calendar months is complete and `end`'s month runs to `end`."""
        first = local_date(end, timezone).replace(day=1)
        for _ in range(months):
            first = (first - timedelta(days=1)).replace(day=1)
        return cls(local_midnight(first, timezone), as_utc(end), timezone)

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def days(self) -> list[Day]:
        """Every local day that overlaps the timeline, oldest first."""
        first, last = local_date(self.start, self.timezone), local_date(self.end, self.timezone)
        mean_weight = sum(WEEKDAY_WEIGHTS) / len(WEEKDAY_WEIGHTS)
        out = []
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            growth = (1 + MONTHLY_GROWTH) ** (-(last - day).days / DAYS_PER_MONTH)
            activity = growth * WEEKDAY_WEIGHTS[day.weekday()] / mean_weight
            out.append(Day(day, local_midnight(day, self.timezone), activity))
        return out

    def month_starts(self) -> list[date]:
        """The 1st of every local month the timeline touches, oldest first."""
        month = local_date(self.start, self.timezone).replace(day=1)
        last = local_date(self.end, self.timezone)
        out = []
        while month <= last:
            out.append(month)
            month = (month + timedelta(days=32)).replace(day=1)
        return out

    def local(self, day: date, hours: float = 0.0) -> datetime:
        """The UTC instant `hours` after the local midnight of `day`."""
        return local_midnight(day, self.timezone) + timedelta(hours=hours)


def draw_count(rng: random.Random, expected: float) -> int:
    """A whole number of things whose mean is `expected`, with day-to-day noise."""
    noisy = expected * max(0.0, rng.gauss(1.0, DAY_NOISE))
    whole = int(noisy)
    return whole + (rng.random() < noisy - whole)
