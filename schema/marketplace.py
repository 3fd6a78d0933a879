"""A services marketplace: service metrics (executions, errors, latency percentiles),
marketplace metrics (searches, views, conversions, the search -> view -> purchase funnel)
and revenue metrics (GMV, MRR and its movements, take rate, creator earnings)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.common import Granularity, Money, ResolvedRange
from schema.funnels import FunnelStep

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


# --------------------------------------------------------------------------- marketplace metrics


@strawberry.type(description="Searches, views and conversions of the range, a service or a category.")
class MarketplaceCounts:
    searches: int = strawberry.field(description="marketplace.searched events.")
    zero_result_searches: int = strawberry.field(description="Searches whose resultsCount was 0.")
    views: int = strawberry.field(description="marketplace.viewed events.")
    conversions: int = strawberry.field(description="marketplace.converted events (purchases).")
    conversion_rate: float = strawberry.field(description="Conversions / views (0 without views).")
    sales: list[Money] = strawberry.field(description="The conversions' amounts per currency.")


@strawberry.type(description="Searches, views and conversions per bucket as parallel lists, one entry per bucket of `starts`.")
class MarketplacePoints:
    searches: list[int] = strawberry.field(description="Searches per bucket.")
    zero_result_searches: list[int] = strawberry.field(description="Searches without results per bucket.")
    views: list[int] = strawberry.field(description="Views per bucket.")
    conversions: list[int] = strawberry.field(description="Conversions per bucket.")
    conversion_rates: list[float] = strawberry.field(description="Conversions / views per bucket (0 without views).")


@strawberry.type(description="A search query and how often it was searched.")
class SearchQueryCount:
    query: str = strawberry.field(description="The query trimmed, lowercased, inner blanks folded to one space.")
    searches: int = strawberry.field(description="Searches for it.")
    zero_results: int = strawberry.field(description="Of them, searches that found nothing.")


@strawberry.type(description="A service's views and conversions.")
class ServiceConversion:
    service_id: str = strawberry.field(description="properties.serviceId as sent.")
    counts: MarketplaceCounts = strawberry.field(description="Its views, conversions and sales (searches are 0).")


@strawberry.type(description="A category's searches, views and conversions.")
class CategoryConversion:
    category: str | None = strawberry.field(description="properties.category as sent; null: events without one.")
    counts: MarketplaceCounts = strawberry.field(description="Its searches, views, conversions and sales.")


@strawberry.type(
    description="A marketplace's searches, views and purchases: top queries, searches without results, conversion rates, "
    "top services and categories, and the search -> view -> purchase funnel. Closed hours, days and months come from "
    "rollups, the open hour from raw events."
)
class MarketplaceMetrics:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    starts: list[datetime] = strawberry.field(description="Start of every bucket (local bucket starts in UTC).")
    total: MarketplaceCounts = strawberry.field(description="The whole range.")
    points: MarketplacePoints = strawberry.field(description="Per bucket.")
    top_queries: list[SearchQueryCount] = strawberry.field(description="Queries by searches, then text (up to limit).")
    zero_result_queries: list[SearchQueryCount] = strawberry.field(
        description="Queries by searches that found nothing, then text (up to limit)."
    )
    top_services: list[ServiceConversion] = strawberry.field(description="Services by conversions, then views, then id (up to limit).")
    top_categories: list[CategoryConversion] = strawberry.field(
        description="Categories by conversions, views, searches, then name (up to limit)."
    )
    funnel: list[FunnelStep] = strawberry.field(
        description="The funnel runner's ordered funnel marketplace.searched -> marketplace.viewed -> marketplace.converted "
        "over the range (14-day window, persons), narrowed to the category when one is given."
    )


# --------------------------------------------------------------------------- revenue metrics


@strawberry.type(description="A ratio in one currency.")
class CurrencyRate:
    currency: str = strawberry.field(description="ISO 4217 code.")
    rate: float = strawberry.field(description="The ratio (0..1 for a take rate).")


@strawberry.type(description="One currency's money per bucket as parallel lists, one entry per bucket of `starts`.")
class CurrencySeries:
    currency: str = strawberry.field(description="ISO 4217 code.")
    gmv: list[int] = strawberry.field(description="GMV per bucket in minor units (refunds subtracted).")
    take: list[int] = strawberry.field(description="Platform fees per bucket in minor units.")
    transactions: list[int] = strawberry.field(description="Sales per bucket.")


@strawberry.type(description="A creator's sales and earnings.")
class CreatorEarnings:
    creator_id: str = strawberry.field(description="properties.creatorId, else the sale's profile id.")
    gmv: list[Money] = strawberry.field(description="Their GMV per currency.")
    take: list[Money] = strawberry.field(description="The platform's fees of their sales per currency.")
    earnings: list[Money] = strawberry.field(description="GMV minus take per currency.")
    transactions: int = strawberry.field(description="Their sales.")


@strawberry.type(description="One customer's MRR change in a month.")
class MrrCustomerChange:
    customer_id: str = strawberry.field(description="u:<userId>, a:<anonymousId> or the visitor; event:<id> for a charge without one.")
    before: int = strawberry.field(description="Their MRR at the previous month's end, in minor units.")
    after: int = strawberry.field(description="Their MRR at this month's end (now, for the current month).")


@strawberry.type(description="One kind of MRR movement in a month.")
class MrrMovement:
    amount_minor: int = strawberry.field(
        description="The MRR it moved, in minor units: positive for new, reactivation and expansion, negative for contraction "
        "and churn."
    )
    customer_count: int = strawberry.field(description="Customers behind it.")
    listed: strawberry.Private[list[MrrCustomerChange]]

    @strawberry.field(description="The customers behind it, by id (up to limit).")
    def customers(
        self, limit: Annotated[int, strawberry.argument(description="How many customers (1..100).")] = 10
    ) -> list[MrrCustomerChange]:
        return self.listed[: max(1, min(limit, 100))]


@strawberry.type(description="MRR of one month in one currency and how it moved since the month before.")
class MrrMonth:
    month: datetime = strawberry.field(description="The month's local start.")
    measured_at: datetime = strawberry.field(description="When MRR was measured: the month's end, or now for the current month.")
    currency: str = strawberry.field(description="ISO 4217 code.")
    mrr: int = strawberry.field(description="MRR in minor units.")
    previous_mrr: int = strawberry.field(description="MRR at the previous month's end.")
    subscribers: int = strawberry.field(description="Customers with MRR.")
    new: MrrMovement = strawberry.field(description="Customers without MRR before and without any earlier charge.")
    reactivation: MrrMovement = strawberry.field(description="Customers without MRR before who had been charged earlier.")
    expansion: MrrMovement = strawberry.field(description="Customers whose MRR grew.")
    contraction: MrrMovement = strawberry.field(description="Customers whose MRR shrank but did not end.")
    churn: MrrMovement = strawberry.field(description="Customers whose MRR ended.")


@strawberry.type(
    description="A marketplace's revenue from the ledger: GMV, take rate, creator earnings, transactions, average order "
    "value, ARPU, and MRR with new, reactivation, expansion, contraction and churn per month. Money is per currency."
)
class RevenueMetrics:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    starts: list[datetime] = strawberry.field(description="Start of every bucket (clipped to the range).")
    gmv: list[Money] = strawberry.field(description="Completed and refunded sales of every type, refunds subtracted.")
    take: list[Money] = strawberry.field(description="Platform fees of those rows.")
    take_rates: list[CurrencyRate] = strawberry.field(description="Take / GMV per currency (0 when GMV is not positive).")
    creator_earnings: list[Money] = strawberry.field(description="GMV minus take per currency.")
    transactions: int = strawberry.field(description="Sales (refunds not counted).")
    average_order_value: list[Money] = strawberry.field(description="GMV / sales per currency, rounded half-to-even.")
    arpu: list[Money] = strawberry.field(description="GMV / distinct paying customers per currency, rounded half-to-even.")
    paying_customers: int = strawberry.field(description="Distinct customers with a sale (summed over currencies).")
    mrr: list[Money] = strawberry.field(description="MRR at the range's last month (now, when that month is the current one).")
    series: list[CurrencySeries] = strawberry.field(description="GMV, take and sales per bucket, per currency.")
    mrr_months: list[MrrMonth] = strawberry.field(description="Every month of the range up to now, per currency.")
    top_creators: list[CreatorEarnings] = strawberry.field(description="Creators by earnings, then id (up to limit).")
