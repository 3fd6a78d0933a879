"""Campaign performance by UTM source, medium and campaign, on the insights runners.

Definitions (the README's campaigns section states them too):
- A visit is a session as the insights sessions report reads it (app/services/insights/
  sessions.py): it belongs to the period of its first event, and its UTM source, medium and
  campaign are those of that first event (null when it had none: direct or untagged traffic).
- Unique visitors: distinct visitor ids among a row's sessions over the whole range.
- A conversion is a money event (gift.purchased, booking.completed, subscription.charged) or an
  order.paid carrying the session id of a visit counted; it converts for that visit's UTM.
  Revenue: their amounts per currency (before refunds).
- Tagged cost: costs whose campaign equals the utm_campaign, counted in the range as every
  cost is (app/services/costs.py), per currency; it belongs to the campaign, not to one
  source or medium, so it is reported per campaign.
- ROI per currency of a campaign: (revenue - cost) / cost in percent (2 decimals); none when
  the campaign has no cost in that currency.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.database import connection
from app.services.costs import date_span
from app.services.insights.grammar import Sql
from app.services.insights.query import InsightRunner, InsightScope, Periods, fetch, periods
from app.services.insights.sessions import SESSION_SPAN
from app.timebuckets import Grain, RangeSpec, TimeRange
from app.vocabulary import CAMPAIGN_CONVERSION_TYPES

Utm = tuple[str | None, str | None, str | None]  # source, medium, campaign


@dataclass(slots=True)
class CampaignPeriod:
    start: datetime
    visits: int = 0
    conversions: int = 0


@dataclass(slots=True)
class UtmRow:
    utm: Utm
    visits: int = 0
    unique_visitors: int = 0
    conversions: int = 0
    revenue: dict[str, int] = field(default_factory=dict)
    periods: list[CampaignPeriod] = field(default_factory=list)


@dataclass(slots=True)
class CampaignTotals:
    campaign: str
    visits: int = 0
    conversions: int = 0
    revenue: dict[str, int] = field(default_factory=dict)
    cost: dict[str, int] = field(default_factory=dict)

    @property
    def roi(self) -> dict[str, float]:
        return {c: round((self.revenue.get(c, 0) - n) * 100 / n, 2) for c, n in self.cost.items() if n}


@dataclass(slots=True)
class CampaignPerformance:
    range: TimeRange
    grain: Grain
    rows: list[UtmRow]
    campaigns: list[CampaignTotals]


def statement(sql: Sql, org: uuid.UUID, span: Periods) -> str:
    """Each visit's first-event UTM and visitor, its conversions, then per UTM and period."""
    order = "e.occurred_at, e.received_at, e.event_id"
    start, end = span.range.start, span.range.end
    return f"""
WITH visits AS MATERIALIZED (
    SELECT e.session_id, min(e.occurred_at) AS started,
           (array_agg(e.utm_source ORDER BY {order}))[1] AS source,
           (array_agg(e.utm_medium ORDER BY {order}))[1] AS medium,
           (array_agg(e.utm_campaign ORDER BY {order}))[1] AS campaign,
           (array_agg(e.visitor_id ORDER BY {order}) FILTER (WHERE e.visitor_id IS NOT NULL))[1] AS visitor,
           count(*) FILTER (WHERE e.type = ANY({sql.param(sorted(CAMPAIGN_CONVERSION_TYPES), 'text[]')})) AS conversions
    FROM events e
    WHERE e.organization_id = {sql.param(org, 'uuid')} AND e.session_id IS NOT NULL
      AND e.occurred_at >= {sql.param(start - SESSION_SPAN, 'timestamptz')}
      AND e.occurred_at < {sql.param(end + SESSION_SPAN, 'timestamptz')}
    GROUP BY e.session_id
    HAVING min(e.occurred_at) >= {sql.param(start, 'timestamptz')} AND min(e.occurred_at) < {sql.param(end, 'timestamptz')}
), bucketed AS (
    SELECT *, width_bucket(started, {sql.param(span.starts, 'timestamptz[]')}) AS i FROM visits
)
SELECT 'visits' AS kind, source, medium, campaign, i, NULL::text AS currency,
       count(*) AS visits, count(DISTINCT visitor) AS visitors, COALESCE(sum(conversions), 0)::bigint AS n
FROM bucketed GROUP BY GROUPING SETS ((source, medium, campaign, i), (source, medium, campaign))
UNION ALL
SELECT 'revenue', b.source, b.medium, b.campaign, NULL, rtrim(e.currency), 0, 0, COALESCE(sum(e.amount_minor), 0)::bigint
FROM bucketed b
JOIN events e ON e.organization_id = $2::uuid AND e.session_id = b.session_id
 AND e.occurred_at >= $3::timestamptz AND e.occurred_at < $4::timestamptz AND e.type = ANY($1::text[])
WHERE b.conversions > 0 AND e.currency IS NOT NULL
GROUP BY b.source, b.medium, b.campaign, e.currency
"""


async def tagged_costs(org: uuid.UUID, span: TimeRange) -> dict[str, dict[str, int]]:
    """campaign -> currency -> cost, for the costs counted in the range."""
    first, last = date_span(span)
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT campaign, currency, sum(amount_minor)::bigint AS total FROM costs WHERE organization_id = $1"
            " AND campaign IS NOT NULL AND incurred_on >= $2 AND incurred_on <= $3 GROUP BY campaign, currency",
            org, first, last,
        )  # fmt: skip
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["campaign"], {})[r["currency"]] = r["total"]
    return out


@dataclass(frozen=True, slots=True)
class Fetched:
    rows: list[Any]
    costs: dict[str, dict[str, int]]


def _utm_rows(plan: Periods, fetched: list[Any]) -> dict[Utm, UtmRow]:
    rows: dict[Utm, UtmRow] = {}
    for r in fetched:
        utm = (r["source"], r["medium"], r["campaign"])
        row = rows.get(utm)
        if row is None:
            row = rows[utm] = UtmRow(utm, periods=[CampaignPeriod(s) for s in plan.starts])
        if r["kind"] == "revenue":
            row.revenue[r["currency"]] = r["n"]
        elif r["i"] is None:
            row.visits, row.unique_visitors, row.conversions = r["visits"], r["visitors"], r["n"]
        else:
            period = row.periods[r["i"] - 1]
            period.visits, period.conversions = r["visits"], r["n"]
    return rows


def _campaign_totals(rows: list[UtmRow], costs: dict[str, dict[str, int]]) -> list[CampaignTotals]:
    totals = {name: CampaignTotals(name, cost=dict(cost)) for name, cost in costs.items()}
    for row in rows:
        name = row.utm[2]
        if name is None:
            continue
        total = totals.setdefault(name, CampaignTotals(name))
        total.visits += row.visits
        total.conversions += row.conversions
        for currency, amount in row.revenue.items():
            total.revenue[currency] = total.revenue.get(currency, 0) + amount
    return sorted(totals.values(), key=lambda t: t.campaign)


class CampaignRunner(InsightRunner[Periods, CampaignPerformance]):
    kind = "campaign_performance"

    def plan(self, scope: InsightScope) -> Periods:
        return periods(self.inputs["range"], self.inputs["grain"], scope.timezone)

    async def fetch(self, scope: InsightScope, plan: Periods) -> Fetched:
        sql = Sql()
        text = statement(sql, scope.organization_id, plan)
        return Fetched(await fetch(sql, text), await tagged_costs(scope.organization_id, plan.range))

    def calculate(self, scope: InsightScope, plan: Periods, fetched: Fetched) -> CampaignPerformance:
        key = lambda row: tuple((x is None, x or "") for x in row.utm)  # noqa: E731 - untagged traffic last
        rows = sorted(_utm_rows(plan, fetched.rows).values(), key=key)
        return CampaignPerformance(plan.range, plan.grain, rows, _campaign_totals(rows, fetched.costs))


async def campaign_performance(
    *, viewer: Any, organization_id: Any, time_range: RangeSpec, grain: Grain = Grain.DAY
) -> CampaignPerformance:
    return await CampaignRunner(viewer=viewer, organization_id=organization_id, range=time_range, grain=grain).run()
