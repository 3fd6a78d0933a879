"""What retention, lifecycle and stickiness share: a person's activity per local period.

Each of them reads events once, grouped by person and period, where the period is the
position of the event's time among period starts computed in Python (local, DST-correct,
`app.timebuckets`), found by PostgreSQL's `width_bucket(instant, starts)`: 0 before the
first start, i for starts[i] <= instant < starts[i + 1] (1-based). No event is loaded into
Python; the statements return counts per period (and per cohort).

Ranges are read as whole periods: a custom range that starts or ends inside a period covers
that whole period (the periods are the range's, as `query.periods` cuts them).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime

from app.errors import BadInput
from app.services.insights.query import Periods, periods
from app.timebuckets import Grain, RangeSpec

PERSON_KNOWN = "e.visitor_id IS NOT NULL"  # events without any identity count as no person


def query_periods(spec: RangeSpec, grain: Grain, timezone: str, *, now: datetime, grain_field: str) -> Periods:
    """The range's periods; a refusal names the field inside the query input
    (`query.range.from`, `query.granularity`)."""
    try:
        return periods(spec, grain, timezone, now=now, field=grain_field)
    except BadInput as exc:
        if exc.field and exc.field.startswith("range"):
            exc.field = f"query.{exc.field}"
        raise


def started(starts: list[datetime], now: datetime) -> int:
    """How many of the periods (by their starts, in order) have begun at `now`. A period
    that has begun is observable, the current, still open one included (PostHog shows it
    too); a period that has not begun yet is not."""
    return bisect_right(starts, now)
