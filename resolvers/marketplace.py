"""The services marketplace's reports (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import orjson
import strawberry
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.types import Info

from app.auth import Access, viewer_from_credential
from app.errors import UserError
from app.services.insights.funnels import StepResult
from app.services.marketplace import marketplace_metrics as market
from app.services.marketplace import revenue_metrics as money
from app.services.marketplace import service_metrics as services
from app.services.marketplace import stream
from app.timebuckets import Grain
from resolvers.common import RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from schema.common import Granularity, Money
from schema.funnels import FunnelStep
from schema.marketplace import (
    CategoryConversion,
    CreatorEarnings,
    CurrencyRate,
    CurrencySeries,
    ErrorCodeCount,
    ExecutionPoints,
    ExecutionStats,
    MarketplaceCounts,
    MarketplaceMetrics,
    MarketplacePoints,
    MrrCustomerChange,
    MrrMonth,
    MrrMovement,
    RevenueMetrics,
    SearchQueryCount,
    ServiceConversion,
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


def to_money(totals: dict[str, int]) -> list[Money]:
    return [Money(amount_minor=amount, currency=currency) for currency, amount in sorted(totals.items())]


def to_counts(counts: market.Counts) -> MarketplaceCounts:
    return MarketplaceCounts(
        searches=counts.searches, zero_result_searches=counts.zero_result_searches, views=counts.views,
        conversions=counts.conversions, conversion_rate=counts.conversion_rate, sales=to_money(counts.sales),
    )  # fmt: skip


def to_market_points(points: list[market.Counts]) -> MarketplacePoints:
    return MarketplacePoints(
        searches=[p.searches for p in points], zero_result_searches=[p.zero_result_searches for p in points],
        views=[p.views for p in points], conversions=[p.conversions for p in points],
        conversion_rates=[p.conversion_rate for p in points],
    )  # fmt: skip


def to_queries(queries: list[market.QueryCount]) -> list[SearchQueryCount]:
    return [SearchQueryCount(query=q.query, searches=q.searches, zero_results=q.zero_results) for q in queries]


def to_funnel_step(step: StepResult) -> FunnelStep:
    return FunnelStep(
        index=step.index, event=step.event, count=step.count, conversion_rate=step.conversion_rate,
        conversion_rate_from_previous=step.conversion_rate_from_previous, drop_off=step.drop_off,
        average_seconds_to_convert=step.average_seconds_to_convert, median_seconds_to_convert=step.median_seconds_to_convert,
    )  # fmt: skip


async def marketplace_metrics(
    info: Info,
    range_: RangeArg,
    organization_id: OrganizationArg = None,
    granularity: GranularityArg = Granularity.DAY,
    category: CategoryArg = None,
    limit: Annotated[int, strawberry.argument(description="How many entries per ranking (1..100).")] = 10,
) -> MarketplaceMetrics:
    found = await market.marketplace_metrics(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(range_),
        grain=Grain(granularity.value), category=category, limit=limit,
    )  # fmt: skip
    return MarketplaceMetrics(
        range=to_resolved_range(found.range), granularity=granularity, starts=found.starts, total=to_counts(found.total),
        points=to_market_points(found.points), top_queries=to_queries(found.top_queries),
        zero_result_queries=to_queries(found.zero_result_queries),
        top_services=[ServiceConversion(service_id=r.key or "", counts=to_counts(r.counts)) for r in found.top_services],
        top_categories=[CategoryConversion(category=r.key, counts=to_counts(r.counts)) for r in found.top_categories],
        funnel=[to_funnel_step(s) for s in found.funnel.steps] if found.funnel is not None else [],
    )  # fmt: skip


def to_movement(movement: money.Movement, sign: int) -> MrrMovement:
    return MrrMovement(
        amount_minor=sign * movement.amount, customer_count=movement.customers,
        listed=[MrrCustomerChange(customer_id=c.customer_id, before=c.before, after=c.after) for c in movement.listed],
    )  # fmt: skip


def to_month(month: money.MrrMonth) -> MrrMonth:
    moves = month.movements
    return MrrMonth(
        month=month.start, measured_at=month.at, currency=month.currency, mrr=month.mrr, previous_mrr=month.previous_mrr,
        subscribers=month.subscribers, new=to_movement(moves["new"], 1), reactivation=to_movement(moves["reactivation"], 1),
        expansion=to_movement(moves["expansion"], 1), contraction=to_movement(moves["contraction"], -1),
        churn=to_movement(moves["churn"], -1),
    )  # fmt: skip


def to_series(found: money.RevenueMetrics) -> list[CurrencySeries]:
    return [
        CurrencySeries(
            currency=c, gmv=[p.gmv.get(c, 0) for p in found.points], take=[p.take.get(c, 0) for p in found.points],
            transactions=[p.sales.get(c, 0) for p in found.points],
        )  # fmt: skip
        for c in sorted(found.total.gmv)
    ]


async def revenue_metrics(
    info: Info,
    range_: RangeArg,
    organization_id: OrganizationArg = None,
    granularity: GranularityArg = Granularity.DAY,
    limit: Annotated[int, strawberry.argument(description="How many creators (1..100).")] = 10,
) -> RevenueMetrics:
    found = await money.revenue_metrics(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(range_),
        grain=Grain(granularity.value), limit=limit,
    )  # fmt: skip
    total = found.total
    return RevenueMetrics(
        range=to_resolved_range(found.range), granularity=granularity, starts=found.starts, gmv=to_money(total.gmv),
        take=to_money(total.take), take_rates=[CurrencyRate(currency=c, rate=r) for c, r in sorted(total.take_rates.items())],
        creator_earnings=to_money(total.creator_earnings), transactions=total.transactions,
        average_order_value=to_money(total.average_order_values), arpu=to_money(found.arpu),
        paying_customers=sum(found.customers.values()), mrr=to_money(found.mrr), series=to_series(found),
        mrr_months=[to_month(m) for m in found.months],
        top_creators=[
            CreatorEarnings(
                creator_id=c.creator_id, gmv=to_money(c.money.gmv), take=to_money(c.money.take),
                earnings=to_money(c.money.creator_earnings), transactions=c.money.transactions,
            )  # fmt: skip
            for c in found.creators
        ],
    )  # fmt: skip


# --------------------------------------------------------------------------- GET /stream

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def stream_endpoint(request: Request) -> Response:
    """Server-Sent Events (app/services/marketplace/stream.py): the credential as a bearer
    header or, since an EventSource cannot set headers, the access_token query parameter."""
    params = request.query_params
    token = params.get("access_token")
    credential = request.headers.get("authorization") or (f"Bearer {token}" if token else None)
    try:
        viewer = await viewer_from_credential(credential)
        plan = await stream.stream_plan(viewer=viewer, organization_id=params.get("organizationId"), channels=params.get("channels"))
    except UserError as exc:
        body = {"error": {"code": exc.code, "message": exc.message, "field": exc.field, **exc.extensions}}
        return Response(orjson.dumps(body), status_code=exc.http_status, media_type="application/json")
    state = request.app.state
    events = stream.frames(
        state.streams, plan, last_event_id=request.headers.get("last-event-id") or params.get("lastEventId"),
        heartbeat_seconds=state.settings.sse_heartbeat_seconds,
    )  # fmt: skip
    return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)


@strawberry.type
class Query:
    """The marketplace domain's reads, merged into the root by schema.root."""

    service_metrics: ServiceMetrics = guarded(
        Access.ORG_READERS, service_metrics,
        "Service executions: success and error rates, latency average and p50/p95/p99 per service and bucket, error codes "
        "ranked, the slowest services.",
    )
    marketplace_metrics: MarketplaceMetrics = guarded(
        Access.ORG_READERS, marketplace_metrics,
        "Marketplace searches, views and purchases: top queries, searches without results, conversion rates, top services "
        "and categories, and the search -> view -> purchase funnel.",
    )
    revenue_metrics: RevenueMetrics = guarded(
        Access.ORG_READERS, revenue_metrics,
        "Marketplace revenue: GMV, take rate, creator earnings, transactions, average order value, ARPU, and MRR with its "
        "monthly movements (new, reactivation, expansion, contraction, churn) and the customers behind them.",
    )
