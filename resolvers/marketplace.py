"""The services marketplace's reports (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services.marketplace import service_metrics as services
from app.timebuckets import Grain
from resolvers.common import RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from schema.common import Granularity
from schema.marketplace import (
    ErrorCodeCount,
    ExecutionPoints,
    ExecutionStats,
    ServiceExecutions,
    ServiceLatency,
    ServiceMetrics,
)

OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="The organization; its admins and viewers may omit it (theirs), platform admins name it."),
]
GranularityArg = Annotated[Granularity, strawberry.argument(description="Bucket size (default DAY), in the organization's zone.")]
CategoryArg = Annotated[str | None, strawberry.argument(description="Only this category (properties.category as sent).")]
LimitArg = Annotated[int, strawberry.argument(description="How many services per ranking (1..100).")]


def to_stats(stats: services.ExecutionStats) -> ExecutionStats:
    return ExecutionStats(
        executions=stats.executions, errors=stats.errors, success_rate=stats.success_rate, error_rate=stats.error_rate,
        average_ms=stats.average_ms, p50_ms=stats.p50_ms, p95_ms=stats.p95_ms, p99_ms=stats.p99_ms,
    )  # fmt: skip


def to_points(points: list[services.ExecutionStats]) -> ExecutionPoints:
    return ExecutionPoints(
        executions=[p.executions for p in points], errors=[p.errors for p in points],
        error_rates=[p.error_rate for p in points], average_ms=[p.average_ms for p in points],
        p50_ms=[p.p50_ms for p in points], p95_ms=[p.p95_ms for p in points], p99_ms=[p.p99_ms for p in points],
    )  # fmt: skip


def to_service(series: services.ServiceSeries) -> ServiceExecutions:
    return ServiceExecutions(
        service_id=series.service_id, category=series.category, total=to_stats(series.total), points=to_points(series.points)
    )


def to_latency(series: services.ServiceSeries) -> ServiceLatency:
    return ServiceLatency(service_id=series.service_id, category=series.category, total=to_stats(series.total))


async def service_metrics(
    info: Info,
    range_: RangeArg,
    organization_id: OrganizationArg = None,
    granularity: GranularityArg = Granularity.DAY,
    service_id: Annotated[str | None, strawberry.argument(description="Only this service (properties.serviceId as sent).")] = None,
    category: CategoryArg = None,
    limit: LimitArg = 20,
) -> ServiceMetrics:
    found = await services.service_metrics(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(range_),
        grain=Grain(granularity.value), service_id=service_id, category=category, limit=limit,
    )  # fmt: skip
    return ServiceMetrics(
        range=to_resolved_range(found.range), granularity=granularity, starts=found.starts, total=to_stats(found.total),
        points=to_points(found.points), services=[to_service(s) for s in found.services],
        slowest_services=[to_latency(s) for s in found.slowest],
        error_codes=[ErrorCodeCount(code=c.code, errors=c.errors, services=c.services) for c in found.error_codes],
        percentile_rank_error=found.rank_error,
    )  # fmt: skip


@strawberry.type
class Query:
    """The marketplace domain's reads, merged into the root by schema.root."""

    service_metrics: ServiceMetrics = guarded(
        Access.ORG_READERS, service_metrics,
        "Service executions: success and error rates, latency average and p50/p95/p99 per service and bucket, error codes "
        "ranked, the slowest services.",
    )
