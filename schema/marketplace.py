"""A services marketplace: service metrics (executions, errors, latency percentiles),
marketplace metrics (searches, views, conversions, the search -> view -> purchase funnel)
and revenue metrics (GMV, MRR and its movements, take rate, creator earnings)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.common import Granularity, ResolvedRange

# --------------------------------------------------------------------------- service metrics


@strawberry.type(description="Executions over a bucket or a range.")
class ExecutionStats:
    executions: int = strawberry.field(description="service.executed events.")
    errors: int = strawberry.field(description="Executions with success false.")
    success_rate: float = strawberry.field(description="Successful executions / executions (0 without executions).")
    error_rate: float = strawberry.field(description="Failed executions / executions (0 without executions).")
    average_ms: float | None = strawberry.field(description="Mean latency (exact); null without executions.")
    p50_ms: float | None = strawberry.field(description="Median latency from the merged KLL sketches; null without executions.")
    p95_ms: float | None = strawberry.field(description="95th percentile latency (KLL); null without executions.")
    p99_ms: float | None = strawberry.field(description="99th percentile latency (KLL); null without executions.")


@strawberry.type(description="Executions per bucket as parallel lists, one entry per bucket of `starts`.")
class ExecutionPoints:
    executions: list[int] = strawberry.field(description="Executions per bucket.")
    errors: list[int] = strawberry.field(description="Failed executions per bucket.")
    error_rates: list[float] = strawberry.field(description="Error rate per bucket (0 without executions).")
    average_ms: list[float | None] = strawberry.field(description="Mean latency per bucket (null without executions).")
    p50_ms: list[float | None] = strawberry.field(description="Median latency per bucket (KLL).")
    p95_ms: list[float | None] = strawberry.field(description="95th percentile latency per bucket (KLL).")
    p99_ms: list[float | None] = strawberry.field(description="99th percentile latency per bucket (KLL).")


@strawberry.type(description="One service's executions over the range and per bucket.")
class ServiceExecutions:
    service_id: str = strawberry.field(description="properties.serviceId as sent.")
    category: str | None = strawberry.field(description="The category most of its executions were sent with (null: none).")
    total: ExecutionStats = strawberry.field(description="Over the whole range.")
    points: ExecutionPoints = strawberry.field(description="Per bucket.")


@strawberry.type(description="A service's executions over the range (no series).")
class ServiceLatency:
    service_id: str = strawberry.field(description="properties.serviceId as sent.")
    category: str | None = strawberry.field(description="The category most of its executions were sent with (null: none).")
    total: ExecutionStats = strawberry.field(description="Over the whole range.")


@strawberry.type(description="An error code and how often services failed with it.")
class ErrorCodeCount:
    code: str | None = strawberry.field(description="properties.errorCode; null for failures sent without one.")
    errors: int = strawberry.field(description="Failed executions with this code.")
    services: int = strawberry.field(description="Distinct services that failed with it.")


@strawberry.type(
    description="Service executions of an organization: success and error rates and latency percentiles per service and "
    "bucket. Percentiles come from mergeable KLL sketches kept in hourly, daily and monthly rollups (the open hour from raw "
    "events): each is within percentileRankError of the exact rank."
)
class ServiceMetrics:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    starts: list[datetime] = strawberry.field(description="Start of every bucket (local bucket starts in UTC).")
    total: ExecutionStats = strawberry.field(description="Every matching execution of the range.")
    points: ExecutionPoints = strawberry.field(description="Every matching execution, per bucket.")
    services: list[ServiceExecutions] = strawberry.field(description="Services ranked by executions, then id (up to limit).")
    slowest_services: list[ServiceLatency] = strawberry.field(description="Services ranked by p95 latency, then id (up to limit).")
    error_codes: list[ErrorCodeCount] = strawberry.field(description="Error codes ranked by failures, then code (up to 100).")
    percentile_rank_error: float = strawberry.field(
        description="The sketches' normalized rank error bound (about 0.0165 for k = 200, 99% confidence): a p95 answer's "
        "true rank lies within 95% plus or minus this."
    )
