"""Revenue metrics of a marketplace, from the ledger: GMV, take and take rate, creator
earnings, transactions, average order value, ARPU, and MRR with its movements per month.

Definitions (the README's marketplace section states them too); money is per currency,
never added across currencies:
- GMV: the ledger's revenue (completed and refunded sales of every type, refunds subtracted
  in the period they happened; pending and failed rows never count).
- Take: the platform fees of those rows (properties.platformFeeMinor, or takeRateBps of the
  amount); take rate = take / GMV (0 when GMV is not positive). Creator earnings = GMV - take,
  per creator (properties.creatorId, else the sale's profile).
- Transactions: sales (refunds are not transactions). Average order value = GMV / sales;
  ARPU = GMV / distinct paying customers (of the currency); both rounded half-to-even.
- MRR: each completed subscription.charged pays for `interval` months from its time (month,
  quarter or year: 1, 3 or 12) and contributes amount / months while it runs. A customer's
  MRR at an instant is the sum over their running charges, rounded half up to a minor unit;
  a month's MRR is the sum over customers at the month's end (at the current time for the
  current month). Refunded and pending charges do not count.
- Movements of month M against month M-1, per customer: new (0 before, > 0 now, no earlier
  charge), reactivation (0 before, > 0 now, charged before), expansion (more than before),
  contraction (less, not 0), churn (> 0 before, 0 now). MRR(M) = MRR(M-1) + new +
  reactivation + expansion - contraction - churn, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, ClassVar

from app.auth import Viewer
from app.services.insights.query import insight_connection, shift_periods
from app.services.marketplace.scope import MarketplaceRunner, MarketplaceScope, check_limit
from app.services.revenue.contract import INTERVAL_MONTHS
from app.services.revenue.money import add_to, clipped_buckets
from app.timebuckets import Grain, RangeSpec, TimeRange, bucket_starts, resolve_range, utcnow

CREATORS_MAX = 100
MOVEMENT_CUSTOMERS_MAX = 100  # customers listed per movement kind and month
MOVEMENTS = ("new", "reactivation", "expansion", "contraction", "churn")
LONGEST_INTERVAL = max(INTERVAL_MONTHS.values())

_REVENUE = "t.organization_id = $1 AND t.status IN ('completed', 'refunded')"
_BUCKETED = f"""
SELECT b.i - 1 AS i, t.currency, sum(t.amount_minor)::bigint AS gmv, sum(t.platform_fee_minor)::bigint AS take,
       count(*) FILTER (WHERE NOT t.is_refund) AS sales
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN transactions t ON {_REVENUE} AND t.occurred_at >= b.s AND t.occurred_at < b.e
GROUP BY b.i, t.currency
"""
_CUSTOMERS = f"""
SELECT t.currency, count(DISTINCT t.customer_id) AS customers
FROM transactions t WHERE {_REVENUE} AND NOT t.is_refund AND t.occurred_at >= $2 AND t.occurred_at < $3
GROUP BY t.currency
"""
_CREATORS = f"""
SELECT t.creator_id, t.currency, sum(t.amount_minor)::bigint AS gmv, sum(t.platform_fee_minor)::bigint AS take,
       count(*) FILTER (WHERE NOT t.is_refund) AS sales
FROM transactions t WHERE {_REVENUE} AND t.creator_id IS NOT NULL AND t.occurred_at >= $2 AND t.occurred_at < $3
GROUP BY 1, 2
"""
_CHARGES = """
SELECT COALESCE(t.customer_id, 'event:' || t.event_id) AS customer, t.currency, t.amount_minor, t.occurred_at,
       COALESCE(t.metadata ->> 'interval', 'month') AS interval
FROM transactions t
WHERE t.organization_id = $1 AND t.type = 'subscription' AND t.status = 'completed' AND NOT t.is_refund
  AND t.occurred_at >= $2 AND t.occurred_at < $3
"""
_EARLIER_SUBSCRIBERS = """
SELECT DISTINCT COALESCE(t.customer_id, 'event:' || t.event_id) AS customer, t.currency
FROM transactions t
WHERE t.organization_id = $1 AND t.type = 'subscription' AND t.status = 'completed' AND NOT t.is_refund
  AND t.occurred_at < $2
"""


@dataclass(slots=True)
class Money:
    """Per-currency figures of a bucket or the range."""

    gmv: dict[str, int] = field(default_factory=dict)
    take: dict[str, int] = field(default_factory=dict)
    sales: dict[str, int] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        return sum(self.sales.values())

    @property
    def creator_earnings(self) -> dict[str, int]:
        return {c: amount - self.take.get(c, 0) for c, amount in self.gmv.items()}

    @property
    def take_rates(self) -> dict[str, float]:
        return {c: (self.take.get(c, 0) / amount if amount > 0 else 0.0) for c, amount in self.gmv.items()}

    @property
    def average_order_values(self) -> dict[str, int]:
        return {c: round(Fraction(amount, self.sales[c])) for c, amount in self.gmv.items() if self.sales.get(c)}


@dataclass(frozen=True, slots=True)
class Creator:
    creator_id: str
    money: Money


@dataclass(frozen=True, slots=True)
class CustomerMove:
    customer_id: str
    currency: str
    before: int
    after: int


@dataclass(slots=True)
class Movement:
    """One kind of movement of one month in one currency: its MRR change and customers."""

    amount: int = 0
    customers: int = 0
    listed: list[CustomerMove] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MrrMonth:
    start: datetime
    at: datetime  # the instant MRR was measured: the month's end, or now for the current month
    currency: str
    mrr: int
    previous_mrr: int
    subscribers: int
    movements: dict[str, Movement]


@dataclass(frozen=True, slots=True)
class RevenueMetrics:
    range: TimeRange
    grain: Grain
    starts: list[datetime]
    total: Money
    points: list[Money]
    arpu: dict[str, int]
    customers: dict[str, int]
    mrr: dict[str, int]  # at the range's last month
    months: list[MrrMonth]
    creators: list[Creator]


@dataclass(frozen=True, slots=True)
class Plan:
    span: TimeRange
    grain: Grain
    starts: list[datetime]
    ends: list[datetime]
    months: list[datetime]  # local month starts of the MRR months
    snapshots: list[datetime]  # MRR instants: before the first month, then each month's


def round_half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__())


class RevenueMetricsQuery(MarketplaceRunner[Plan, RevenueMetrics]):
    """Inputs: organization_id, time_range, grain, limit."""

    kind: ClassVar[str] = "marketplace_revenue_metrics"

    def validate(self, scope: MarketplaceScope) -> None:
        check_limit(self.inputs["limit"], CREATORS_MAX)

    def plan(self, scope: MarketplaceScope) -> Plan:
        span = resolve_range(self.inputs["time_range"], scope.timezone)
        grain: Grain = self.inputs["grain"]
        starts, ends = clipped_buckets(span, grain)
        now = utcnow()
        months = [m for m in bucket_starts(span, Grain.MONTH) if m <= now]
        snapshots = [m - timedelta(microseconds=1) for m in months[:1]]
        for month in months:
            end = shift_periods(month, Grain.MONTH, 1, timezone=span.timezone)
            snapshots.append(min(end - timedelta(microseconds=1), now))
        return Plan(span, grain, starts, ends, months, snapshots)

    async def fetch(self, scope: MarketplaceScope, plan: Plan) -> dict[str, Any]:
        org, span = scope.organization_id, plan.span
        async with insight_connection() as conn:
            found: dict[str, Any] = {
                "buckets": await conn.fetch(_BUCKETED, org, plan.starts, plan.ends),
                "customers": await conn.fetch(_CUSTOMERS, org, span.start, span.end),
                "creators": await conn.fetch(_CREATORS, org, span.start, span.end),
                "charges": [],
                "earlier": [],
            }
            if plan.months:
                since = shift_periods(plan.months[0], Grain.MONTH, -(LONGEST_INTERVAL + 1), timezone=span.timezone)
                found["charges"] = await conn.fetch(_CHARGES, org, since, plan.snapshots[-1] + timedelta(microseconds=1))
                found["earlier"] = await conn.fetch(_EARLIER_SUBSCRIBERS, org, since)
        return found

    def calculate(self, scope: MarketplaceScope, plan: Plan, fetched: Mapping[str, Any]) -> RevenueMetrics:
        points = [Money() for _ in plan.starts]
        total = Money()
        for row in fetched["buckets"]:
            for money in (points[row["i"]], total):
                add_to(money.gmv, row["currency"], row["gmv"])
                add_to(money.take, row["currency"], row["take"])
                add_to(money.sales, row["currency"], row["sales"])
        customers = {r["currency"]: r["customers"] for r in fetched["customers"] if r["customers"]}
        arpu = {c: round(Fraction(total.gmv.get(c, 0), n)) for c, n in customers.items()}
        months = mrr_months(plan, fetched["charges"], fetched["earlier"])
        last = plan.months[-1] if plan.months else None
        return RevenueMetrics(
            range=plan.span, grain=plan.grain, starts=plan.starts, total=total, points=points, arpu=arpu,
            customers=customers, mrr={m.currency: m.mrr for m in months if m.start == last},
            months=months, creators=_creators(fetched["creators"], self.inputs["limit"]),
        )  # fmt: skip


def _creators(rows: list[Any], limit: int) -> list[Creator]:
    creators: dict[str, Money] = {}
    for row in rows:
        money = creators.setdefault(row["creator_id"], Money())
        add_to(money.gmv, row["currency"], row["gmv"])
        add_to(money.take, row["currency"], row["take"])
        add_to(money.sales, row["currency"], row["sales"])
    ranked = sorted(creators.items(), key=lambda c: (-sum(c[1].creator_earnings.values()), c[0]))
    return [Creator(creator, money) for creator, money in ranked[:limit]]


@dataclass(frozen=True, slots=True)
class Running:
    """One subscription charge as MRR reads it: what it adds per month while it runs."""

    key: tuple[str, str]  # (currency, customer)
    start: datetime
    end: datetime
    monthly: Fraction


def running_charges(charges: list[Any], timezone: str) -> list[Running]:
    """Each charge's run: from its time for its interval's months on the local calendar."""
    out = []
    for charge in charges:
        months = INTERVAL_MONTHS.get(charge["interval"], 1)
        start = charge["occurred_at"]
        end = shift_periods(start, Grain.MONTH, months, timezone=timezone)
        out.append(Running((charge["currency"], charge["customer"]), start, end, Fraction(charge["amount_minor"], months)))
    return out


def customer_mrr(runs: list[Running], instant: datetime) -> dict[tuple[str, str], int]:
    """(currency, customer) -> MRR at `instant`: the running charges' monthly amounts, rounded half up."""
    sums: dict[tuple[str, str], Fraction] = {}
    for run in runs:
        if run.start <= instant < run.end:
            sums[run.key] = sums.get(run.key, Fraction(0)) + run.monthly
    rounded = {key: round_half_up(value) for key, value in sums.items()}
    return {key: value for key, value in rounded.items() if value > 0}


def mrr_months(plan: Plan, charges: list[Any], earlier: list[Any]) -> list[MrrMonth]:
    """Each month's MRR per currency and its movements against the month before."""
    runs = running_charges(charges, plan.span.timezone)
    charged_before = {(r["currency"], r["customer"]) for r in earlier}
    first_charge: dict[tuple[str, str], datetime] = {}
    for charge in charges:
        key = (charge["currency"], charge["customer"])
        first_charge[key] = min(first_charge.get(key, charge["occurred_at"]), charge["occurred_at"])
    out: list[MrrMonth] = []
    before = customer_mrr(runs, plan.snapshots[0]) if plan.months else {}
    for month, instant in zip(plan.months, plan.snapshots[1:], strict=True):
        after = customer_mrr(runs, instant)
        currencies = sorted({c for c, _ in before} | {c for c, _ in after})
        for currency in currencies:
            moves = {kind: Movement() for kind in MOVEMENTS}
            for key in sorted(k for k in before.keys() | after.keys() if k[0] == currency):
                was, now = before.get(key, 0), after.get(key, 0)
                kind = _movement(was, now, key in charged_before or first_charge.get(key, month) < month)
                if kind is None:
                    continue
                move = moves[kind]
                move.amount += abs(now - was)
                move.customers += 1
                if len(move.listed) < MOVEMENT_CUSTOMERS_MAX:
                    move.listed.append(CustomerMove(key[1], currency, was, now))
            out.append(MrrMonth(
                start=month, at=instant, currency=currency, mrr=sum(v for k, v in after.items() if k[0] == currency),
                previous_mrr=sum(v for k, v in before.items() if k[0] == currency),
                subscribers=sum(1 for k in after if k[0] == currency), movements=moves,
            ))  # fmt: skip
        before = after
    return out


def _movement(was: int, now: int, charged_earlier: bool) -> str | None:
    if was == 0 and now > 0:
        return "reactivation" if charged_earlier else "new"
    if was > 0 and now == 0:
        return "churn"
    if now > was:
        return "expansion"
    if now < was:
        return "contraction"
    return None


async def revenue_metrics(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, grain: Grain = Grain.DAY, limit: int = 10
) -> RevenueMetrics:
    return await RevenueMetricsQuery(
        viewer=viewer, organization_id=organization_id, time_range=time_range, grain=grain, limit=limit
    ).run()
