"""The users preset: what a platform's users page shows, composed from the insight runners
(each answer cached on its own) rather than computed a second way.

Definitions (the README states them too), over every event ($all):
- active persons of a period: persons with at least one event in it; DAU / WAU / MAU at a
  period: persons active in the 1 / 7 / 30 local days ending with its last day (today for the
  current one); the range's DAU is the mean of its days' DAU;
- stickiness: the mean over the range's days of DAU / MAU;
- retention day N: of the persons whose first event ever was on a day of the range, the share
  active again on exactly the N-th local day after it, over the persons whose day N has
  ended (a day still in progress would only lower it);
- churn rate: of the persons active in one period, the share not active in the next, over
  the range's consecutive pairs of periods (weighted by the first period's actives): the
  lifecycle's dormant persons over the previous period's active ones;
- average session duration: sessionMetrics' mean over the sessions that started in the range.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.services.insights import lifecycle as lifecycle_runner
from app.services.insights import retention as retention_runner
from app.services.insights import sessions, trends
from app.services.insights.grammar import ALL_EVENTS, EventMatcher
from app.services.insights.query import shift_periods
from app.timebuckets import Grain, RangeSpec, TimeRange, utcnow

EVERY_EVENT = EventMatcher(ALL_EVENTS)
RETENTION_DAYS = (1, 7, 30)


@dataclass(frozen=True, slots=True)
class UsersQuery:
    organization_id: uuid.UUID | str
    range: RangeSpec
    grain: Grain = Grain.DAY


@dataclass(frozen=True, slots=True)
class UsersPoint:
    start: datetime
    active: int
    weekly_active: int
    monthly_active: int
    churn_rate: float | None  # None for the first period (its previous one is outside the range)


@dataclass(frozen=True, slots=True)
class UserMetrics:
    range: TimeRange
    grain: Grain
    active: int
    dau: float
    wau: int
    mau: int
    stickiness: float
    retention: dict[int, float | None]  # day N -> share; None when no cohort's day N has ended
    churn_rate: float | None
    average_session_seconds: float
    points: list[UsersPoint]


async def user_metrics(*, viewer: Any, query: UsersQuery) -> UserMetrics:
    org, span = query.organization_id, query.range
    per_period = await trends.trends(viewer=viewer, query=trends.TrendsQuery(
        organization_id=org, range=span, grain=query.grain,
        series=(trends.TrendSeries(EVERY_EVENT, trends.Math.UNIQUE_PERSONS),
                trends.TrendSeries(EVERY_EVENT, trends.Math.WEEKLY_ACTIVE),
                trends.TrendSeries(EVERY_EVENT, trends.Math.MONTHLY_ACTIVE)),
    ))  # fmt: skip
    cohorts = await retention_runner.retention(
        viewer=viewer, organization_id=org, time_range=span, start=EVERY_EVENT, back=EVERY_EVENT, period=Grain.DAY,
        periods=max(RETENTION_DAYS), cohort_kind=retention_runner.CohortKind.FIRST_TIME, mode=retention_runner.Mode.EXACT,
    )  # fmt: skip
    activity = await lifecycle_runner.lifecycle(
        viewer=viewer, organization_id=org, time_range=span, event=EVERY_EVENT, granularity=query.grain
    )
    visits = await sessions.session_metrics(viewer=viewer, query=sessions.SessionsQuery(org, span, Grain.DAY))
    active, weekly, monthly = (line.values for line in per_period.lines)
    dau, mau = (active, monthly) if query.grain is Grain.DAY else await daily_and_monthly_active(viewer, query)
    churns = churn_rates(activity)
    return UserMetrics(
        range=per_period.range, grain=query.grain, active=int(per_period.lines[0].total),
        dau=sum(dau) / len(dau) if dau else 0.0, wau=int(weekly[-1]) if weekly else 0,
        mau=int(monthly[-1]) if monthly else 0,
        stickiness=sum(d / m for d, m in zip(dau, mau, strict=True) if m) / len(dau) if dau else 0.0,
        retention={n: day_retention(cohorts, n, utcnow()) for n in RETENTION_DAYS},
        churn_rate=overall_churn(activity), average_session_seconds=visits.total.average_seconds,
        points=[
            UsersPoint(start, int(a), int(w), int(m), churn)
            for start, a, w, m, churn in zip(per_period.lines[0].starts, active, weekly, monthly, churns, strict=True)
        ],
    )  # fmt: skip


async def daily_and_monthly_active(viewer: Any, query: UsersQuery) -> tuple[list[float], list[float]]:
    """DAU and MAU per day of the range, for a preset whose points are weeks or months."""
    daily = await trends.trends(viewer=viewer, query=trends.TrendsQuery(
        organization_id=query.organization_id, range=query.range, grain=Grain.DAY,
        series=(trends.TrendSeries(EVERY_EVENT, trends.Math.UNIQUE_PERSONS),
                trends.TrendSeries(EVERY_EVENT, trends.Math.MONTHLY_ACTIVE)),
    ))  # fmt: skip
    dau, mau = (line.values for line in daily.lines)
    return dau, mau


def day_retention(result: retention_runner.Retention, day: int, now: datetime) -> float | None:
    """Returned on day N over the cohorts whose day N has ended."""
    ended = [
        c for c in result.cohorts
        if c.counts[day] is not None
        and shift_periods(c.start, Grain.DAY, day + 1, timezone=result.range.timezone) <= now
    ]  # fmt: skip
    sizes = sum(c.size for c in ended)
    return sum(c.counts[day] or 0 for c in ended) / sizes if sizes else None


def churn_rates(activity: lifecycle_runner.Lifecycle) -> list[float | None]:
    """Per period: the previous period's actives who are dormant now, over those actives."""
    rates: list[float | None] = [None]
    for before, now in zip(activity.periods, activity.periods[1:], strict=False):
        actives = active_in(before)
        rates.append(-(now.dormant or 0) / actives if actives and now.dormant is not None else None)
    return rates[: len(activity.periods)]


def overall_churn(activity: lifecycle_runner.Lifecycle) -> float | None:
    pairs = [(active_in(b), -(n.dormant or 0)) for b, n in zip(activity.periods, activity.periods[1:], strict=False)
             if n.dormant is not None]  # fmt: skip
    actives = sum(a for a, _ in pairs)
    return sum(d for _, d in pairs) / actives if actives else None


def active_in(period: lifecycle_runner.LifecyclePeriod) -> int:
    return (period.new or 0) + (period.returning or 0) + (period.resurrecting or 0)
