"""The one way to bucket time: ranges, local hours and days, and report buckets.

Every instant is a timezone-aware `datetime` in UTC; every bucket is named by the UTC
instant of its *local* start in the organization's IANA zone. A local day can be 23, 24 or
25 hours long, and a local hour can start at :30 UTC (Asia/Kolkata): nothing here assumes
that hours or days are a fixed number of seconds after UTC midnight.

Used by the worker (which rollup bucket does an event go to) and by every report (which
buckets does a range cover, and which rollups answer them), so the two always agree.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import BadInput

HOUR = timedelta(hours=1)
MAX_CUSTOM_SPAN = timedelta(days=400)


class Grain(str, Enum):
    """Report bucket sizes (the same values as the GraphQL `Granularity` enum)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"  # ISO weeks: Monday to Sunday
    MONTH = "month"


class Preset(str, Enum):
    """The one family of moving windows: each ends with the current local bucket (hour, day or
    month) and reaches back a whole number of them. The GraphQL enums offer subsets (reports'
    `RangePreset`, the platform's `GrowthPreset`) of these values."""

    LAST_24_HOURS = "last_24_hours"
    LAST_7_DAYS = "last_7_days"
    LAST_30_DAYS = "last_30_days"
    LAST_90_DAYS = "last_90_days"
    LAST_12_MONTHS = "last_12_months"


PRESET_DAYS = {Preset.LAST_7_DAYS: 7, Preset.LAST_30_DAYS: 30, Preset.LAST_90_DAYS: 90}
PRESET_GRAIN = {Preset.LAST_24_HOURS: Grain.HOUR, Preset.LAST_12_MONTHS: Grain.MONTH}  # a series' bucket, else days


@dataclass(frozen=True)
class RangeSpec:
    """What a client asked for: a preset, or a custom [start, end) (end defaults to now)."""

    preset: Preset | str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class TimeRange:
    """A resolved range: [start, end) in UTC, and the zone its buckets follow."""

    start: datetime
    end: datetime
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # organizations validate this on creation
        raise BadInput(f"time zone {name!r} is unknown", field="timezone") from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


# Custom ranges outside these bounds are refused: near datetime's limits, bucket arithmetic
# in local time would overflow (found by the schemathesis fuzz run, tests/test_fuzz.py).
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)


def _custom_instant(value: datetime, field: str) -> datetime:
    try:
        moment = as_utc(value)
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST_INSTANT <= moment <= LATEST_INSTANT:
        raise BadInput(f"{field} must lie between 1970 and 2200", field=field)
    return moment


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: every instant must carry its offset")
    return value.astimezone(UTC)


# -- local hours and days -----------------------------------------------------------------


def hour_start(instant: datetime, tz: ZoneInfo | str) -> datetime:
    """UTC instant at which the local clock hour containing `instant` began.

    Subtracting the local minutes/seconds keeps the right side of a DST fold (the two
    01:00 hours of a fall-back night are two buckets) and gives :30 UTC in Asia/Kolkata.
    """
    tz = zone(tz) if isinstance(tz, str) else tz
    local = as_utc(instant).astimezone(tz)
    return as_utc(instant) - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)


def next_hour_start(bucket: datetime, tz: ZoneInfo | str) -> datetime:
    """Start of the local hour after the one starting at `bucket`."""
    following = hour_start(bucket + HOUR, tz)
    return following if following > bucket else bucket + HOUR


def hour_ceil(instant: datetime, tz: ZoneInfo | str) -> datetime:
    """The first local hour start at or after `instant`."""
    start = hour_start(instant, tz)
    return start if start == instant else next_hour_start(start, tz)


def local_midnight(day: date, tz: ZoneInfo | str) -> datetime:
    """UTC instant at which local `day` began (the first instant of the day when midnight
    itself falls in a DST gap, as zoneinfo resolves a gap with the earlier offset)."""
    tz = zone(tz) if isinstance(tz, str) else tz
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_date(instant: datetime, tz: ZoneInfo | str) -> date:
    tz = zone(tz) if isinstance(tz, str) else tz
    return as_utc(instant).astimezone(tz).date()


def day_start(instant: datetime, tz: ZoneInfo | str) -> datetime:
    """UTC instant at which the local day containing `instant` began."""
    return local_midnight(local_date(instant, tz), tz)


def day_ceil(instant: datetime, tz: ZoneInfo | str) -> datetime:
    """The first local midnight at or after `instant`."""
    start = day_start(instant, tz)
    return start if start == instant else local_midnight(local_date(instant, tz) + timedelta(days=1), tz)


def month_start(instant: datetime, tz: ZoneInfo | str) -> datetime:
    """UTC instant at which the local calendar month containing `instant` began."""
    return local_midnight(local_date(instant, tz).replace(day=1), tz)


def month_ceil(instant: datetime, tz: ZoneInfo | str) -> datetime:
    """The first local month start at or after `instant`."""
    start = month_start(instant, tz)
    if start == instant:
        return start
    first = local_date(instant, tz).replace(day=1)
    return local_midnight(date(first.year + (first.month == 12), first.month % 12 + 1, 1), tz)


# -- report buckets -----------------------------------------------------------------------


def _period_date(day: date, grain: Grain) -> date:
    if grain is Grain.WEEK:
        return day - timedelta(days=day.weekday())
    if grain is Grain.MONTH:
        return day.replace(day=1)
    return day


def _next_period_date(day: date, grain: Grain) -> date:
    if grain is Grain.WEEK:
        return day + timedelta(days=7)
    if grain is Grain.MONTH:
        return date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return day + timedelta(days=1)


def bucket_start(instant: datetime, grain: Grain | str, tz: ZoneInfo | str) -> datetime:
    """UTC instant of the local start of the `grain` bucket containing `instant`."""
    grain = Grain(grain)
    if grain is Grain.HOUR:
        return hour_start(instant, tz)
    return local_midnight(_period_date(local_date(instant, tz), grain), tz)


def bucket_starts(time_range: TimeRange, grain: Grain | str) -> list[datetime]:
    """Starts of every bucket overlapping [start, end), in order; the first may begin before
    `start` (a custom range starting mid-bucket), none begins at or after `end`."""
    grain = Grain(grain)
    tz = time_range.zone
    starts: list[datetime] = []
    if grain is Grain.HOUR:
        current = hour_start(time_range.start, tz)
        while current < time_range.end:
            starts.append(current)
            current = next_hour_start(current, tz)
        return starts
    day = _period_date(local_date(time_range.start, tz), grain)
    current = local_midnight(day, tz)
    while current < time_range.end:
        starts.append(current)
        day = _next_period_date(day, grain)
        current = local_midnight(day, tz)
    return starts


class BucketIndex:
    """Maps instants (event times, rollup bucket starts) to positions in a bucket list."""

    def __init__(self, starts: list[datetime]) -> None:
        self.starts = starts
        self._exact = {s: i for i, s in enumerate(starts)}

    def __len__(self) -> int:
        return len(self.starts)

    def find(self, instant: datetime) -> int | None:
        """Position of the bucket containing `instant` (None before the first bucket)."""
        exact = self._exact.get(instant)
        if exact is not None:
            return exact
        position = bisect_right(self.starts, instant) - 1
        return position if position >= 0 else None


# -- ranges -------------------------------------------------------------------------------


def resolve_range(spec: RangeSpec, timezone: str, *, now: datetime | None = None) -> TimeRange:
    """Turn a preset or a custom pair into [start, end) UTC instants in `timezone`.

    LAST_24_HOURS is the current local hour and the 23 before it (ends at the next hour
    start); LAST_7_DAYS / LAST_30_DAYS / LAST_90_DAYS are today and the 6 / 29 / 89 local days
    before (end at the start of tomorrow); LAST_12_MONTHS is this local month and the 11
    before (ends at the start of next month). Custom ranges need offsets, `from` before `to`, and at most
    400 days; `to` defaults to now.
    """
    tz = zone(timezone)
    now = as_utc(now) if now is not None else utcnow()
    if spec.preset is not None:
        if spec.start is not None or spec.end is not None:
            raise BadInput("give either a preset or from/to, not both", field="range")
        preset = Preset(spec.preset.value if isinstance(spec.preset, Enum) else spec.preset)
        if preset is Preset.LAST_24_HOURS:
            end = next_hour_start(hour_start(now, tz), tz)
            start = end
            for _ in range(24):
                start = hour_start(start - HOUR, tz)
            return TimeRange(start=start, end=end, timezone=timezone)
        if preset is Preset.LAST_12_MONTHS:
            start = month_start(now, tz)
            for _ in range(11):
                start = month_start(start - timedelta(days=1), tz)
            end = month_start(month_start(now, tz) + timedelta(days=32), tz)
            return TimeRange(start=start, end=end, timezone=timezone)
        today = local_date(now, tz)
        days = PRESET_DAYS[preset]
        return TimeRange(
            start=local_midnight(today - timedelta(days=days - 1), tz),
            end=local_midnight(today + timedelta(days=1), tz),
            timezone=timezone,
        )
    if spec.start is None:
        raise BadInput("give a preset, or a custom range with from (and optionally to)", field="range.from")
    if spec.start.tzinfo is None:
        raise BadInput("range.from needs a UTC offset, e.g. 2026-03-01T00:00:00Z", field="range.from")
    if spec.end is not None and spec.end.tzinfo is None:
        raise BadInput("range.to needs a UTC offset, e.g. 2026-03-08T00:00:00Z", field="range.to")
    start = _custom_instant(spec.start, "range.from")
    end = _custom_instant(spec.end, "range.to") if spec.end is not None else now
    if start >= end:
        raise BadInput("range.from must be before range.to", field="range.to")
    if end - start > MAX_CUSTOM_SPAN:
        raise BadInput(f"a range may span at most {MAX_CUSTOM_SPAN.days} days", field="range.to")
    return TimeRange(start=start, end=end, timezone=timezone)
