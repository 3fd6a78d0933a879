"""Marketplace metrics: searches, top queries, searches without results, service views,
conversions and the conversion rate, top services and categories, and the search -> view ->
purchase funnel.

Definitions (the README's marketplace section states them too):
- A search is a marketplace.searched event, a view a marketplace.viewed, a conversion (a
  purchase) a marketplace.converted; each counts in the local period of its occurredAt.
  Closed hours, days and months come from the rollups the worker keeps, the open hour and
  partial-hour edges from raw events (`profile_analytics.planner`).
- Conversion rate = conversions / views (of a service, a category or the whole range; 0
  without views).
- Queries are compared trimmed, lowercased and with inner blanks folded to one space;
  a zero-result search is one whose resultsCount is 0.
- Sales are the amounts of the conversions per currency (the ledger's revenue, refunds
  netted, is in revenueMetrics).
- Rankings: queries by searches (then text); services by conversions, then views (then id);
  categories by conversions, views, searches (then name); events without a category count
  under null.
- The funnel is the funnel runner's (app/services/insights/funnels.py) over three ordered
  steps, marketplace.searched -> marketplace.viewed -> marketplace.converted, with its
  default 14-day conversion window, of persons (userId, else anonymousId, else the visitor).
  A category narrows every step to events of that category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from app.auth import Viewer
from app.services.insights import funnels, grammar
from app.services.insights.query import insight_connection, periods_of
from app.services.marketplace.rollups import KIND_OF, MARKET_COLUMNS, MarketFact, market_fact
from app.services.marketplace.scope import MarketplaceRunner, MarketplaceScope, check_filter, check_limit
from app.services.profile_analytics.planner import Params, Segment, plan_segments, raw_filter, rollup_filter
from app.services.revenue.money import add_to
from app.timebuckets import BucketIndex, Grain, RangeSpec, TimeRange, resolve_range, utcnow
from app.vocabulary import MARKETPLACE_CONVERTED, MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED

RANKING_MAX = 100
FUNNEL_STEPS = (MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED, MARKETPLACE_CONVERTED)
_ROLLUPS = """
SELECT r.bucket_start AS at, r.kind, r.key, r.category, r.currency, r.events, r.zero_results, r.amount_minor
FROM marketplace_rollups r
WHERE r.organization_id = $1 AND ({segments}) AND ($2::text IS NULL OR r.category = $2)
"""
_RAW = f"""
SELECT {MARKET_COLUMNS}
FROM events e
WHERE e.organization_id = $1 AND e.type = ANY($3::text[]) AND ({{segments}})
  AND ($2::text IS NULL OR COALESCE(e.properties ->> 'category', '') = $2)
"""


@dataclass(slots=True)
class Counts:
    """Searches, views and conversions of a bucket, a service, a category or the range."""

    searches: int = 0
    zero_result_searches: int = 0
    views: int = 0
    conversions: int = 0
    sales: dict[str, int] = field(default_factory=dict)

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.views if self.views else 0.0


@dataclass(frozen=True, slots=True)
class QueryCount:
    query: str
    searches: int
    zero_results: int


@dataclass(frozen=True, slots=True)
class Ranked:
    key: str | None  # a service id or a category
    counts: Counts


@dataclass(frozen=True, slots=True)
class MarketplaceMetrics:
    range: TimeRange
    grain: Grain
    starts: list[datetime]
    total: Counts
    points: list[Counts]
    top_queries: list[QueryCount]
    zero_result_queries: list[QueryCount]
    top_services: list[Ranked]
    top_categories: list[Ranked]
    funnel: funnels.FunnelResult | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    span: TimeRange
    grain: Grain
    starts: list[datetime]
    segments: list[Segment]


class MarketplaceMetricsQuery(MarketplaceRunner[Plan, MarketplaceMetrics]):
    """Inputs: organization_id, time_range, grain, category, limit."""

    kind: ClassVar[str] = "marketplace_metrics"

    def validate(self, scope: MarketplaceScope) -> None:
        check_filter(self.inputs.get("category"), "category")
        check_limit(self.inputs["limit"], RANKING_MAX)

    def plan(self, scope: MarketplaceScope) -> Plan:
        span = resolve_range(self.inputs["time_range"], scope.timezone)
        grain: Grain = self.inputs["grain"]
        segments = plan_segments(span, now=utcnow(), whole_days=grain is not Grain.HOUR, whole_months=grain is Grain.MONTH)
        return Plan(span, grain, periods_of(span, grain).starts, segments)

    async def fetch(self, scope: MarketplaceScope, plan: Plan) -> tuple[list[Any], list[Any]]:
        rollups: list[Any] = []
        raw: list[Any] = []
        filters = (scope.organization_id, self.inputs.get("category"))
        async with insight_connection() as conn:
            params = Params(*filters)
            if (condition := rollup_filter(params, plan.segments)) is not None:
                rollups = await conn.fetch(_ROLLUPS.format(segments=condition), *params.values)
            params = Params(*filters, list(KIND_OF))
            if (condition := raw_filter(params, plan.segments)) is not None:
                raw = await conn.fetch(_RAW.format(segments=condition), *params.values)
        return rollups, raw

    def calculate(self, scope: MarketplaceScope, plan: Plan, fetched: tuple[list[Any], list[Any]]) -> MarketplaceMetrics:
        rollups, raw = fetched
        tally = _Tally(len(plan.starts))
        buckets = BucketIndex(plan.starts)
        for row in rollups:
            fact = MarketFact(row["kind"], row["key"], row["category"], row["currency"], row["zero_results"], row["amount_minor"])
            tally.add(buckets.find(row["at"]) or 0, fact, row["events"])
        for row in raw:
            tally.add(buckets.find(row["at"]) or 0, market_fact(row), 1)
        limit = self.inputs["limit"]
        by_searches = sorted(tally.queries.values(), key=lambda q: (-q.searches, q.query))
        zero = sorted((q for q in tally.queries.values() if q.zero_results), key=lambda q: (-q.zero_results, q.query))
        return MarketplaceMetrics(
            range=plan.span, grain=plan.grain, starts=plan.starts, total=tally.total, points=tally.points,
            top_queries=by_searches[:limit], zero_result_queries=zero[:limit],
            top_services=_ranked(tally.services, limit), top_categories=_ranked(tally.categories, limit),
        )  # fmt: skip


class _Tally:
    """Counts of the range, per bucket, per query, service and category, as facts arrive."""

    def __init__(self, width: int) -> None:
        self.total = Counts()
        self.points = [Counts() for _ in range(width)]
        self.queries: dict[str, QueryCount] = {}
        self.services: dict[str | None, Counts] = {}
        self.categories: dict[str | None, Counts] = {}

    def add(self, index: int, fact: MarketFact, events: int) -> None:
        groups = [self.total, self.points[index], self.categories.setdefault(fact.category or None, Counts())]
        if fact.kind == "search":
            query = self.queries.get(fact.key) or QueryCount(fact.key, 0, 0)
            self.queries[fact.key] = QueryCount(fact.key, query.searches + events, query.zero_results + fact.zero_results)
        else:
            groups.append(self.services.setdefault(fact.key, Counts()))
        for counts in groups:
            _add(counts, fact, events)


def _add(counts: Counts, fact: MarketFact, events: int) -> None:
    if fact.kind == "search":
        counts.searches += events
        counts.zero_result_searches += fact.zero_results
    elif fact.kind == "view":
        counts.views += events
    else:
        counts.conversions += events
        if fact.currency:
            add_to(counts.sales, fact.currency, fact.amount_minor)


def _ranked(groups: dict[str | None, Counts], limit: int) -> list[Ranked]:
    ranked = sorted(
        groups.items(), key=lambda g: (-g[1].conversions, -g[1].views, -g[1].searches, g[0] is None, g[0] or "")
    )
    return [Ranked(key, counts) for key, counts in ranked[:limit]]


def funnel_preset(category: str | None) -> funnels.FunnelSpec:
    """search -> view -> purchase, ordered, each step of the category when one is given."""
    filters = (
        [grammar.property_filter(source=grammar.PropertySource.EVENT, key="category", operator=None, value=category,
                                 field="category")]
        if category is not None
        else []
    )  # fmt: skip
    steps = [grammar.event_matcher(event=step, filters=filters, field="category") for step in FUNNEL_STEPS]
    return funnels.funnel_spec(steps=steps)


async def marketplace_metrics(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, grain: Grain = Grain.DAY,
    category: str | None = None, limit: int = 10, with_funnel: bool = True,
) -> MarketplaceMetrics:  # fmt: skip
    """The metrics, and (when asked) the funnel preset over the same range from the funnel runner."""
    found = await MarketplaceMetricsQuery(
        viewer=viewer, organization_id=organization_id, time_range=time_range, grain=grain, category=category, limit=limit
    ).run()
    if not with_funnel:
        return found
    funnel = await funnels.funnel(
        viewer=viewer, organization_id=organization_id, time_range=time_range, spec=funnel_preset(category)
    )
    return MarketplaceMetrics(**{**{n: getattr(found, n) for n in found.__dataclass_fields__}, "funnel": funnel})
