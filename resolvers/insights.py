"""Trends and the sessions and users presets (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services.insights import sessions as sessions_service
from app.services.insights import trends as service
from app.services.insights import users as users_service
from resolvers.common import RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.insight_inputs import to_breakdown, to_grain, to_matcher
from schema.common import Granularity
from schema.insights import (
    DayRetention,
    PageSessions,
    SessionMetrics,
    SessionPeriod,
    TrendCompare,
    TrendLine,
    TrendMath,
    TrendPoint,
    TrendsQueryInput,
    TrendsResult,
    UserMetrics,
    UsersPoint,
)

OrganizationArg = Annotated[strawberry.ID, strawberry.argument(description="The organization.")]
GranularityArg = Annotated[Granularity | None, strawberry.argument(description="Period size (default DAY).")]
TrendsQueryArg = Annotated[TrendsQueryInput, strawberry.argument(description="What to count, how, per which period.")]


def to_trends_query(value: TrendsQueryInput) -> service.TrendsQuery:
    series = tuple(
        service.TrendSeries(
            matcher=to_matcher(s, f"query.series[{i}]"),
            math=service.Math(s.math.value),
            property=s.property,
            label=s.label,
        )
        for i, s in enumerate(value.series)
    )
    return service.TrendsQuery(
        organization_id=value.organization_id,
        range=to_range_spec(value.range),
        series=series,
        grain=to_grain(value.granularity),
        breakdown=to_breakdown(value.breakdown, "query.breakdown"),
        compare=value.compare,
        formula=value.formula,
    )


def to_trend_line(line: service.TrendLine) -> TrendLine:
    return TrendLine(
        label=line.label,
        series_index=line.series_index,
        math=TrendMath(line.math.value) if line.math is not None else None,
        breakdown_value=line.breakdown_value,
        is_other=line.is_other,
        compare=TrendCompare(line.compare),
        total=line.total,
        points=[TrendPoint(start=s, value=v) for s, v in zip(line.starts, line.values, strict=True)],
    )


async def trends(info: Info, query: TrendsQueryArg) -> TrendsResult:
    found = await service.trends(viewer=viewer_of(info), query=to_trends_query(query))
    return TrendsResult(
        range=to_resolved_range(found.range),
        granularity=Granularity(found.grain.value),
        series=[to_trend_line(line) for line in found.lines],
    )


def to_session_period(period: sessions_service.SessionPeriod) -> SessionPeriod:
    return SessionPeriod(
        start=period.start, sessions=period.sessions, average_duration_seconds=period.average_seconds,
        pages_per_session=period.pages_per_session, bounce_rate=period.bounce_rate,
    )  # fmt: skip


async def session_metrics(
    info: Info, organization_id: OrganizationArg, range_: RangeArg, granularity: GranularityArg = None
) -> SessionMetrics:
    query = sessions_service.SessionsQuery(organization_id, to_range_spec(range_), to_grain(granularity))
    found = await sessions_service.session_metrics(viewer=viewer_of(info), query=query)
    return SessionMetrics(
        range=to_resolved_range(found.range), granularity=Granularity(found.grain.value),
        total=to_session_period(found.total), periods=[to_session_period(p) for p in found.periods],
        top_entry_pages=[PageSessions(page=p, sessions=n) for p, n in found.entry_pages],
        top_exit_pages=[PageSessions(page=p, sessions=n) for p, n in found.exit_pages],
    )  # fmt: skip


async def user_metrics(
    info: Info, organization_id: OrganizationArg, range_: RangeArg, granularity: GranularityArg = None
) -> UserMetrics:
    query = users_service.UsersQuery(organization_id, to_range_spec(range_), to_grain(granularity))
    found = await users_service.user_metrics(viewer=viewer_of(info), query=query)
    return UserMetrics(
        range=to_resolved_range(found.range), granularity=Granularity(found.grain.value), active=found.active,
        dau=found.dau, wau=found.wau, mau=found.mau, stickiness=found.stickiness,
        retention=[DayRetention(day=n, rate=rate) for n, rate in found.retention.items()],
        churn_rate=found.churn_rate, average_session_duration_seconds=found.average_session_seconds,
        points=[
            UsersPoint(start=p.start, active=p.active, weekly_active=p.weekly_active, monthly_active=p.monthly_active,
                       churn_rate=p.churn_rate)
            for p in found.points
        ],
    )  # fmt: skip


@strawberry.type
class Query:
    trends = guarded(
        Access.ORG_READERS,
        trends,
        "Events, persons, sessions or a numeric property per period, for one or more series, with breakdown,"
        " compare-to-previous and formulas.",
    )
    session_metrics = guarded(
        Access.ORG_READERS,
        session_metrics,
        "Sessions per period: average duration, pages per session, bounce rate, top entry and exit pages.",
    )
    user_metrics = guarded(
        Access.ORG_READERS,
        user_metrics,
        "The users page: DAU, WAU, MAU, stickiness, day 1 / 7 / 30 retention, churn rate and average session"
        " duration, with a point per period.",
    )
