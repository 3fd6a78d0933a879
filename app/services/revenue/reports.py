"""The revenue domain's reports over the ledger: revenue by source (summary and time
series), gifts (summary, categories, top donors) and duo referrals.

Revenue of a period is the ledger's rule (see `ledger`): its completed and refunded rows
summed, refunds (negative) included; pending and failed rows never count.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from app.auth import Viewer
from app.database import connection
from app.errors import BadInput
from app.services.revenue.money import MoneyReport, Scope, add_to, clipped_buckets
from app.timebuckets import Grain, RangeSpec, TimeRange

R = TypeVar("R")


# --------------------------------------------------------------------------- revenue

_BUCKETED = """
SELECT b.i - 1 AS i, t.type, t.currency, sum(t.amount_minor)::bigint AS amount,
       sum(t.platform_fee_minor + t.service_fee_minor + t.processor_fee_minor)::bigint AS fees, count(*) AS n
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN transactions t ON t.organization_id = $1 AND t.occurred_at >= b.s AND t.occurred_at < b.e
WHERE ($4::uuid IS NULL OR t.profile_id = $4) AND t.status IN ('completed', 'refunded')
GROUP BY b.i, t.type, t.currency
ORDER BY b.i, t.type, t.currency
"""


@dataclass(slots=True)
class Bucket:
    """Revenue of one period: by (source, currency), fees by currency, entries."""

    start: datetime
    end: datetime
    by_source: dict[tuple[str, str], int] = field(default_factory=dict)
    fees: dict[str, int] = field(default_factory=dict)
    transactions: int = 0

    @property
    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, currency), amount in self.by_source.items():
            add_to(out, currency, amount)
        return dict(sorted(out.items()))


async def revenue_buckets(scope: Scope, starts: list[datetime], ends: list[datetime]) -> list[Bucket]:
    """The ledger's revenue (sales and refunds, not pending or failed) in each [start, end)."""
    buckets = [Bucket(s, e) for s, e in zip(starts, ends, strict=True)]
    async with connection() as conn:
        rows = await conn.fetch(_BUCKETED, scope.organization_id, starts, ends, scope.profile_id)
    for row in rows:
        bucket = buckets[row["i"]]
        bucket.by_source[(row["type"], row["currency"])] = row["amount"]
        bucket.fees[row["currency"]] = bucket.fees.get(row["currency"], 0) + row["fees"]
        bucket.transactions += row["n"]
    return buckets


@dataclass(frozen=True, slots=True)
class RevenueSummary:
    scope: Scope
    range: TimeRange
    previous: TimeRange
    current: Bucket
    before: Bucket


class RevenueSummaryQuery(MoneyReport[RevenueSummary]):
    """Revenue by source over a range, against the equally long period just before it."""

    kind = "revenue_summary"

    async def fetch(self, scope: Scope, span: TimeRange) -> RevenueSummary:
        previous = TimeRange(span.start - (span.end - span.start), span.start, span.timezone)
        before, current = await revenue_buckets(scope, [previous.start, span.start], [previous.end, span.end])
        return RevenueSummary(scope=scope, range=span, previous=previous, current=current, before=before)


async def revenue_summary(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec
) -> RevenueSummary:
    return await RevenueSummaryQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range
    ).run()


@dataclass(frozen=True, slots=True)
class RevenueSeries:
    scope: Scope
    range: TimeRange
    grain: Grain
    buckets: list[Bucket]


class RevenueTimeseriesQuery(MoneyReport[RevenueSeries]):
    """Revenue per local bucket with its source breakdown (every bucket listed)."""

    kind = "revenue_timeseries"

    async def fetch(self, scope: Scope, span: TimeRange) -> RevenueSeries:
        grain = self.inputs["grain"]
        starts, ends = clipped_buckets(span, grain)
        return RevenueSeries(scope=scope, range=span, grain=grain, buckets=await revenue_buckets(scope, starts, ends))


async def revenue_timeseries(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec, grain: Grain
) -> RevenueSeries:
    return await RevenueTimeseriesQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, grain=grain
    ).run()


# --------------------------------------------------------------------------- gifts

_GIFTS = """
SELECT t.event_id, t.profile_id, t.customer_id, t.category, t.amount_minor, t.currency, t.status, t.is_refund, t.occurred_at
FROM transactions t
WHERE t.organization_id = $1 AND ($2::uuid IS NULL OR t.profile_id = $2) AND t.type = 'gift'
  AND t.status IN ('completed', 'refunded') AND t.occurred_at >= $3 AND t.occurred_at < $4
ORDER BY t.occurred_at DESC, t.event_id DESC
"""
TOP_DONORS_MAX = 100
DONOR_PURCHASES_MAX = 50


@dataclass(frozen=True, slots=True)
class Gifts:
    """A range's gift entries (sales and refunds), newest first, with the buckets to trend them in."""

    scope: Scope
    range: TimeRange
    rows: list[asyncpg.Record]
    previous_rows: list[asyncpg.Record]

    @property
    def sales(self) -> list[asyncpg.Record]:
        return [r for r in self.rows if not r["is_refund"]]


class GiftReport(MoneyReport[R]):
    """Gift entries of a range and of the equally long period before it (for trends): the
    summary, categories and donors are folds over them (`calculate`)."""

    def validate(self, scope: Scope) -> None:
        if "limit" in self.inputs:
            check_limit(self.inputs["limit"], TOP_DONORS_MAX)

    async def fetch(self, scope: Scope, span: TimeRange) -> Gifts:
        async with connection() as conn:
            rows = await conn.fetch(
                _GIFTS, scope.organization_id, scope.profile_id, span.start - (span.end - span.start), span.end
            )
        current = [r for r in rows if r["occurred_at"] >= span.start]
        return Gifts(scope=scope, range=span, rows=current, previous_rows=[r for r in rows if r["occurred_at"] < span.start])


def check_limit(limit: int, most: int) -> int:
    if not 1 <= limit <= most:
        raise BadInput(f"limit must be from 1 to {most}", field="limit")
    return limit


@dataclass(frozen=True, slots=True)
class GiftSummary:
    range: TimeRange
    revenue: dict[str, int]
    gifts: int
    donors: int


class GiftSummaryQuery(GiftReport[GiftSummary]):
    """Gift revenue (refunds subtracted), gifts bought (refunded ones included), distinct donors."""

    kind = "gift_summary"

    def calculate(self, scope: Scope, span: TimeRange, found: Gifts) -> GiftSummary:
        revenue: dict[str, int] = {}
        for row in found.rows:
            add_to(revenue, row["currency"], row["amount_minor"])
        donors = {r["customer_id"] for r in found.sales if r["customer_id"] is not None}
        return GiftSummary(found.range, revenue, len(found.sales), len(donors))


async def gift_summary(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec
) -> GiftSummary:
    return await GiftSummaryQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range
    ).run()


@dataclass(slots=True)
class CategoryTotals:
    revenue: dict[str, int] = field(default_factory=dict)
    gifts: int = 0


@dataclass(frozen=True, slots=True)
class GiftCategory:
    category: str
    current: CategoryTotals
    previous: CategoryTotals


class GiftCategoriesQuery(GiftReport[list[GiftCategory]]):
    """Categories by gifts bought (then name), each against the previous equal period: its trend."""

    kind = "gift_categories"

    def calculate(self, scope: Scope, span: TimeRange, found: Gifts) -> list[GiftCategory]:
        current, previous = _by_category(found.rows), _by_category(found.previous_rows)
        ranked = sorted(current.keys() | previous.keys(), key=lambda c: (-current.get(c, CategoryTotals()).gifts, c))
        limit = self.inputs["limit"]
        return [GiftCategory(c, current.get(c, CategoryTotals()), previous.get(c, CategoryTotals())) for c in ranked[:limit]]


async def gift_categories(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec, limit: int = 20
) -> list[GiftCategory]:
    return await GiftCategoriesQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, limit=limit
    ).run()


def _by_category(rows: Sequence[Mapping[str, Any]]) -> dict[str, CategoryTotals]:
    out: dict[str, CategoryTotals] = {}
    for row in rows:
        totals = out.setdefault(row["category"], CategoryTotals())
        add_to(totals.revenue, row["currency"], row["amount_minor"])
        totals.gifts += 0 if row["is_refund"] else 1
    return out


@dataclass(slots=True)
class GiftDonor:
    donor_id: str
    revenue: dict[str, int] = field(default_factory=dict)
    purchases: list[Mapping[str, Any]] = field(default_factory=list)  # newest first


class TopGiftDonorsQuery(GiftReport[list[GiftDonor]]):
    """Donors by gifts bought in the range (then id), with what they paid, refunds subtracted."""

    kind = "top_gift_donors"

    def calculate(self, scope: Scope, span: TimeRange, found: Gifts) -> list[GiftDonor]:
        donors: dict[str, GiftDonor] = {}
        for row in found.rows:
            if row["customer_id"] is None:
                continue
            donor = donors.setdefault(row["customer_id"], GiftDonor(row["customer_id"]))
            add_to(donor.revenue, row["currency"], row["amount_minor"])
            if not row["is_refund"]:
                donor.purchases.append(dict(row))  # plain: an answer the shared cache can pickle
        return sorted(donors.values(), key=lambda d: (-len(d.purchases), d.donor_id))[: self.inputs["limit"]]


async def top_gift_donors(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec, limit: int = 10
) -> list[GiftDonor]:
    return await TopGiftDonorsQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, limit=limit
    ).run()


# --------------------------------------------------------------------------- duo referrals

_DUO = """
SELECT CASE WHEN t.profile_id = $2 THEN t.partner_profile_id ELSE t.profile_id END AS partner,
       p.name AS partner_name, t.currency, count(*) FILTER (WHERE NOT t.is_refund) AS bookings,
       sum(t.amount_minor)::bigint AS revenue,
       sum(CASE WHEN t.profile_id = $2 THEN t.amount_minor * t.split_percent / 100
                ELSE t.amount_minor - t.amount_minor * t.split_percent / 100 END)::bigint AS own_share
FROM transactions t
LEFT JOIN profiles p ON p.id = CASE WHEN t.profile_id = $2 THEN t.partner_profile_id ELSE t.profile_id END
WHERE t.organization_id = $1 AND t.type = 'booking' AND t.partner_profile_id IS NOT NULL
  AND (t.profile_id = $2 OR t.partner_profile_id = $2) AND t.profile_id IS DISTINCT FROM t.partner_profile_id
  AND t.status IN ('completed', 'refunded') AND t.occurred_at >= $3 AND t.occurred_at < $4
GROUP BY 1, 2, t.currency
"""


@dataclass(slots=True)
class DuoPartner:
    partner_profile_id: uuid.UUID
    partner_name: str | None
    bookings: int = 0
    revenue: dict[str, int] = field(default_factory=dict)
    own_share: dict[str, int] = field(default_factory=dict)

    @property
    def partner_share(self) -> dict[str, int]:
        return {c: self.revenue[c] - self.own_share.get(c, 0) for c in self.revenue}


@dataclass(frozen=True, slots=True)
class DuoStats:
    scope: Scope
    range: TimeRange
    partners: list[DuoPartner]

    @property
    def bookings(self) -> int:
        return sum(p.bookings for p in self.partners)

    @property
    def revenue(self) -> dict[str, int]:
        return _summed(p.revenue for p in self.partners)

    @property
    def own_share(self) -> dict[str, int]:
        return _summed(p.own_share for p in self.partners)

    @property
    def partner_share(self) -> dict[str, int]:
        own = self.own_share
        return {c: amount - own.get(c, 0) for c, amount in self.revenue.items()}


def _summed(totals: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in totals:
        for currency, amount in one.items():
            add_to(out, currency, amount)
    return out


class DuoStatsQuery(MoneyReport[DuoStats]):
    """A profile's duo bookings (either side) with each side's share under the booking's split.

    Split rule: the booked profile gets amount * splitPercent / 100 truncated toward zero
    (refunds are negative and truncate the same way), the partner the rest; the split is
    the event's properties.splitPercent, else the organization's duoSplitPercent when recorded."""

    kind = "duo_stats"

    async def fetch(self, scope: Scope, span: TimeRange) -> list[asyncpg.Record]:
        async with connection() as conn:
            return await conn.fetch(_DUO, scope.organization_id, scope.profile_id, span.start, span.end)

    def calculate(self, scope: Scope, span: TimeRange, rows: list[asyncpg.Record]) -> DuoStats:
        partners: dict[uuid.UUID, DuoPartner] = {}
        for row in rows:
            partner = partners.setdefault(row["partner"], DuoPartner(row["partner"], row["partner_name"]))
            partner.bookings += row["bookings"]
            add_to(partner.revenue, row["currency"], row["revenue"])
            add_to(partner.own_share, row["currency"], row["own_share"])
        ranked = sorted(partners.values(), key=lambda p: (-p.bookings, str(p.partner_profile_id)))
        return DuoStats(scope=scope, range=span, partners=ranked)


async def duo_stats(*, viewer: Viewer, profile_id: Any, time_range: RangeSpec) -> DuoStats:
    return await DuoStatsQuery(viewer=viewer, profile_id=profile_id, time_range=time_range).run()
