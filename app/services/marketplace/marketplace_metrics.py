"""Marketplace metrics: searches, top queries, searches without results, service views,
conversions and the conversion rate, top services and categories, and the search -> view ->
purchase funnel.

Definitions (the README's marketplace section states them too):
- A search is a marketplace.searched event, a view a marketplace.viewed, a conversion (a
  purchase) a marketplace.converted; each counts in the local period of its occurredAt.
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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from app.auth import Viewer
from app.services.insights import funnels, grammar
from app.services.insights.query import insight_connection
from app.services.marketplace.scope import MarketplaceRunner, MarketplaceScope, check_filter, check_limit
from app.services.revenue.money import add_to, clipped_buckets
from app.timebuckets import Grain, RangeSpec, TimeRange, resolve_range
from app.vocabulary import MARKETPLACE_CONVERTED, MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED

RANKING_MAX = 100
FUNNEL_STEPS = (MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED, MARKETPLACE_CONVERTED)
_TYPES = [MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED, MARKETPLACE_CONVERTED]
_CATEGORY = "($2::text IS NULL OR e.properties ->> 'category' = $2)"
_QUERY_TEXT = r"lower(regexp_replace(btrim(e.properties ->> 'query'), '\s+', ' ', 'g'))"

_BUCKETS = f"""
SELECT b.i - 1 AS i, e.type, count(*) AS n,
       count(*) FILTER (WHERE (e.properties ->> 'resultsCount')::bigint = 0) AS zero
FROM unnest($3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY AS b(s, f, i)
JOIN events e ON e.organization_id = $1 AND e.type = ANY($5::text[]) AND e.occurred_at >= b.s AND e.occurred_at < b.f
WHERE {_CATEGORY}
GROUP BY b.i, e.type
"""
_QUERIES = f"""
SELECT {_QUERY_TEXT} AS query, count(*) AS searches,
       count(*) FILTER (WHERE (e.properties ->> 'resultsCount')::bigint = 0) AS zero_results
FROM events e
WHERE e.organization_id = $1 AND e.type = '{MARKETPLACE_SEARCHED}' AND e.occurred_at >= $3 AND e.occurred_at < $4 AND {_CATEGORY}
GROUP BY 1
"""
_GROUPS = f"""
SELECT e.properties ->> $5 AS key, e.type, rtrim(e.currency) AS currency, count(*) AS n,
       COALESCE(sum(e.amount_minor), 0)::bigint AS amount
FROM events e
WHERE e.organization_id = $1 AND e.type = ANY($6::text[]) AND e.occurred_at >= $3 AND e.occurred_at < $4 AND {_CATEGORY}
GROUP BY 1, 2, 3
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
    ends: list[datetime]


class MarketplaceMetricsQuery(MarketplaceRunner[Plan, MarketplaceMetrics]):
    """Inputs: organization_id, time_range, grain, category, limit."""

    kind: ClassVar[str] = "marketplace_metrics"

    def validate(self, scope: MarketplaceScope) -> None:
        check_filter(self.inputs.get("category"), "category")
        check_limit(self.inputs["limit"], RANKING_MAX)

    def plan(self, scope: MarketplaceScope) -> Plan:
        span = resolve_range(self.inputs["time_range"], scope.timezone)
        grain: Grain = self.inputs["grain"]
        starts, ends = clipped_buckets(span, grain)
        return Plan(span, grain, starts, ends)

    async def fetch(self, scope: MarketplaceScope, plan: Plan) -> dict[str, list[Any]]:
        head = (scope.organization_id, self.inputs.get("category"), plan.span.start, plan.span.end)
        async with insight_connection() as conn:
            return {
                "buckets": await conn.fetch(_BUCKETS, head[0], head[1], plan.starts, plan.ends, _TYPES),
                "queries": await conn.fetch(_QUERIES, *head),
                "services": await conn.fetch(_GROUPS, *head, "serviceId", [MARKETPLACE_VIEWED, MARKETPLACE_CONVERTED]),
                "categories": await conn.fetch(_GROUPS, *head, "category", _TYPES),
            }

    def calculate(self, scope: MarketplaceScope, plan: Plan, fetched: Mapping[str, list[Any]]) -> MarketplaceMetrics:
        limit = self.inputs["limit"]
        points = [Counts() for _ in plan.starts]
        for row in fetched["buckets"]:
            _add(points[row["i"]], row["type"], row["n"], zero=row["zero"])
        total = Counts()
        for row in fetched["categories"]:
            _add(total, row["type"], row["n"], currency=row["currency"], amount=row["amount"])
        total.zero_result_searches = sum(p.zero_result_searches for p in points)
        queries = [QueryCount(r["query"], r["searches"], r["zero_results"]) for r in fetched["queries"]]
        by_searches = sorted(queries, key=lambda q: (-q.searches, q.query))
        zero = sorted((q for q in queries if q.zero_results), key=lambda q: (-q.zero_results, q.query))
        return MarketplaceMetrics(
            range=plan.span, grain=plan.grain, starts=plan.starts, total=total, points=points,
            top_queries=by_searches[:limit], zero_result_queries=zero[:limit],
            top_services=_ranked(fetched["services"], limit), top_categories=_ranked(fetched["categories"], limit),
        )  # fmt: skip


def _add(counts: Counts, event_type: str, n: int, *, zero: int = 0, currency: str | None = None, amount: int = 0) -> None:
    if event_type == MARKETPLACE_SEARCHED:
        counts.searches += n
        counts.zero_result_searches += zero
    elif event_type == MARKETPLACE_VIEWED:
        counts.views += n
    elif event_type == MARKETPLACE_CONVERTED:
        counts.conversions += n
        if currency is not None:
            add_to(counts.sales, currency, amount)


def _ranked(rows: list[Any], limit: int) -> list[Ranked]:
    groups: dict[str | None, Counts] = {}
    for row in rows:
        _add(groups.setdefault(row["key"], Counts()), row["type"], row["n"], currency=row["currency"], amount=row["amount"])
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
