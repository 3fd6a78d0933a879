"""The range planner: which part of a report's range is read from which source.

A range is split by `plan_segments` into
  * the open part (at or after the start of the current local hour): raw `events`, which
    also counts events the worker has not processed yet;
  * whole local days before it: 'day' rollups (unless the report splits days into hours),
    and whole local months instead of their days where the report never splits a month;
  * the remaining whole local hours: 'hour' rollups;
  * partial-hour edges of custom ranges: raw `events`.
Every instant is read from exactly one source. `rollup_filter`, `raw_filter` and
`union_query` turn a plan into the conditions of a report's statements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.timebuckets import TimeRange, day_ceil, day_start, hour_ceil, hour_start, month_ceil, month_start


@dataclass(frozen=True)
class Segment:
    """A piece of a range answered by one source: 'month', 'day' or 'hour' rollups, or 'raw' events."""

    source: str
    start: datetime
    end: datetime


def plan_segments(
    time_range: TimeRange, *, now: datetime, whole_days: bool = True, whole_months: bool = False
) -> list[Segment]:
    """Split [start, end) so that every instant is read from exactly one source.

    The open local hour (at or after the current hour start) and partial-hour edges come
    from raw events; whole local months from 'month' rollups when `whole_months` (reports
    that never split a month: overviews, monthly series); whole local days from 'day'
    rollups (unless `whole_days` is off, as for hourly series); the remaining whole local
    hours from 'hour' rollups. Rollups are only read for buckets that closed before the
    current hour, so a month row is used only for months before the current one.
    """
    tz = time_range.zone
    cutoff = hour_start(now, tz)
    segments: list[Segment] = []
    closed_end = min(time_range.end, cutoff)
    if time_range.start < closed_end:
        a, b = time_range.start, closed_end
        a_hour, b_hour = hour_ceil(a, tz), hour_start(b, tz)
        if a_hour >= b_hour:
            segments.append(Segment("raw", a, b))
        else:
            if a < a_hour:
                segments.append(Segment("raw", a, a_hour))
            d_a, d_b = day_ceil(a_hour, tz), day_start(b_hour, tz)
            if whole_days and d_a < d_b:
                if a_hour < d_a:
                    segments.append(Segment("hour", a_hour, d_a))
                segments += _days_and_months(d_a, d_b, tz, whole_months)
                if d_b < b_hour:
                    segments.append(Segment("hour", d_b, b_hour))
            else:
                segments.append(Segment("hour", a_hour, b_hour))
            if b_hour < b:
                segments.append(Segment("raw", b_hour, b))
    open_start = max(time_range.start, cutoff)
    if open_start < time_range.end:
        segments.append(Segment("raw", open_start, time_range.end))
    return segments


def _days_and_months(start: datetime, end: datetime, tz: Any, whole_months: bool) -> list[Segment]:
    """[start, end) between local midnights: whole local months, and the days around them."""
    m_a, m_b = month_ceil(start, tz), month_start(end, tz)
    if not whole_months or m_a >= m_b:
        return [Segment("day", start, end)]
    pieces = [Segment("day", start, m_a), Segment("month", m_a, m_b), Segment("day", m_b, end)]
    return [p for p in pieces if p.start < p.end]


class Params:
    """Positional parameters of a statement built from a segment plan."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def rollup_filter(params: Params, segments: Sequence[Segment], alias: str = "r") -> str | None:
    """`(grain = .. AND bucket_start in [lo, hi)) OR ...`: one primary-key range scan each
    (a join against unnest() would read every rollup row of the profile)."""
    parts = [
        f"({alias}.grain = {params.add(s.source)} AND {alias}.bucket_start >= {params.add(s.start)}"
        f" AND {alias}.bucket_start < {params.add(s.end)})"
        for s in segments
        if s.source != "raw"
    ]
    return " OR ".join(parts) or None


def raw_filter(params: Params, segments: Sequence[Segment], alias: str = "e") -> str | None:
    parts = [
        f"({alias}.occurred_at >= {params.add(s.start)} AND {alias}.occurred_at < {params.add(s.end)})"
        for s in segments
        if s.source == "raw"
    ]
    return " OR ".join(parts) or None


def union_query(
    params: Params, segments: Sequence[Segment], rollups: str, events: str, outer: str, event_args: Mapping[str, Any]
) -> str | None:
    """`outer` over the UNION ALL of a rollup part and a raw-event part (either may be absent).
    The raw part's own arguments become parameters only when it is there: PostgreSQL cannot
    type a parameter no statement uses."""
    parts = []
    if (condition := rollup_filter(params, segments)) is not None:
        parts.append(rollups.format(segments=condition))
    if (condition := raw_filter(params, segments)) is not None:
        parts.append(events.format(segments=condition, **{k: params.add(v) for k, v in event_args.items()}))
    return outer.format(parts=" UNION ALL ".join(parts)) if parts else None

