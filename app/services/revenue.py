"""Revenue: the money ledger the worker writes from domain events, and what is read from it
(revenue by source, gifts, duo referrals, live counters).

The ledger (`transactions`, migration 0006) has one row per money event, keyed by
(organization, event id), written by the worker inside the batch's transaction
(`record_batch`), so a re-run batch records nothing twice:

- booking.completed, gift.purchased, subscription.charged, affiliate.commission and
  order.paid are sales of type booking | gift | subscription | affiliate | order, status
  completed (or pending when properties.status is "pending": recorded, not revenue).
- order.refunded is a refund: its own row with the NEGATIVE amount at the refund's time,
  linked to the refunded row (properties.originalEventId, else the latest sale with the
  same properties.orderId), whose type, profile and duo split it copies. The refunded row
  keeps its amount and its period and gets status refunded. A refund that arrives before
  its sale is linked when the sale arrives. A partial refund is simply a smaller amount.
- payment.failed with amountMinor and currency is a failed row: never revenue (without an
  amount there is nothing to record; the fraud rules still see the event).
- payout.settled is a payout (`payouts`), kept for reconciliation, never revenue.

Revenue of a period = the sum of the amounts of its completed and refunded rows, refunds
(negative) included: a refund reduces the revenue of the period it happened in and leaves
the period of the sale alone. Fees (properties.platformFeeMinor, serviceFeeMinor,
processorFeeMinor) are kept per row for gross profit (app/services/pnl.py).

The customer (donor for gifts) is the event's visitor id: u:<userId>, else a:<anonymousId>,
else the cookie-less hash (one namespace, so a user id never collides with a device id).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

import asyncpg
import orjson

from app.auth import (
    Viewer,
    administered_organization,
    administered_scope,
    readable_profile,
)
from app.consumers import Batch, Consumer
from app.database import connection, transaction
from app.errors import BadInput, NotFound
from app.live_messages import GiftPurchasedMessage, LiveMessage, RevenueCountersMessage
from app.runners import QueryRunner
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.timebuckets import (
    Grain,
    RangeSpec,
    TimeRange,
    bucket_starts,
    day_start,
    local_date,
    local_midnight,
    resolve_range,
    utcnow,
)
from app.vocabulary import (
    AFFILIATE_COMMISSION,
    BOOKING_COMPLETED,
    GIFT_PURCHASED,
    LEDGER_EVENT_TYPES,
    ORDER_PAID,
    ORDER_REFUNDED,
    PAYMENT_FAILED,
    PAYOUT_SETTLED,
    SUBSCRIPTION_CHARGED,
)

R = TypeVar("R")

TYPES = ("booking", "gift", "subscription", "affiliate", "order")
STATUSES = ("pending", "completed", "refunded", "failed")
REVENUE_STATUSES = ("completed", "refunded")
SALE_TYPE = {
    BOOKING_COMPLETED: "booking",
    GIFT_PURCHASED: "gift",
    SUBSCRIPTION_CHARGED: "subscription",
    AFFILIATE_COMMISSION: "affiliate",
    ORDER_PAID: "order",
    PAYMENT_FAILED: "order",
}
FEE_PROPERTIES = {"platformFeeMinor": "platform", "serviceFeeMinor": "service", "processorFeeMinor": "processor"}
TEXT_PROPERTIES = ("category", "orderId", "originalEventId", "payoutId")
TEXT_PROPERTY_MAX_CHARS = 128
DEFAULT_GIFT_CATEGORY = "other"
BIGINT_MAX = 2**63 - 1


# --------------------------------------------------------------------------- ingestion contract


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """The money properties the ledger reads, checked at ingestion so the worker can trust
    them: (field, reason) of the first bad one, None when they are fine."""
    if event_type not in LEDGER_EVENT_TYPES or not isinstance(properties, Mapping):
        return None
    for name in FEE_PROPERTIES:
        value = properties.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= BIGINT_MAX):
            return f"properties.{name}", f"properties.{name} must be a non-negative integer in minor units"
    for name in TEXT_PROPERTIES:
        value = properties.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > TEXT_PROPERTY_MAX_CHARS):
            return f"properties.{name}", f"properties.{name} must be text of 1 to {TEXT_PROPERTY_MAX_CHARS} characters"
    split = properties.get("splitPercent")
    if split is not None and (type(split) is not int or not 1 <= split <= 99):
        return "properties.splitPercent", "properties.splitPercent must be an integer from 1 to 99"
    partner = properties.get("partnerProfileId")
    if partner is not None:
        try:
            uuid.UUID(str(partner))
        except ValueError:
            return "properties.partnerProfileId", "properties.partnerProfileId is not a valid id"
    status = properties.get("status")
    if status is not None and status not in ("pending", "completed"):
        return "properties.status", "properties.status must be pending or completed"
    return None


# --------------------------------------------------------------------------- the worker's side


@dataclass(slots=True)
class LedgerEffects:
    """What a batch added to the ledger, for the live pushes after commit."""

    gifts: list[GiftPurchasedMessage] = field(default_factory=list)
    organizations: set[uuid.UUID] = field(default_factory=set)

    @property
    def channels(self) -> set[str]:
        """Every channel `live_messages` may publish to."""
        if not self.organizations:
            return set()
        return (
            {gift.channel for gift in self.gifts}
            | {RevenueCountersMessage.channel_of(str(org)) for org in self.organizations}
            | {RevenueCountersMessage.channel_of(None)}
        )


_LEDGER_EVENTS = f"""
SELECT e.organization_id, e.event_id, e.type, e.profile_id, COALESCE(e.visitor_id, e.user_id) AS customer_id,
       e.amount_minor, rtrim(e.currency) AS currency, e.properties, e.occurred_at, o.duo_split_percent
FROM {CLAIMED_EVENTS}
JOIN organizations o ON o.id = e.organization_id
WHERE e.amount_minor IS NOT NULL AND e.currency IS NOT NULL
ORDER BY e.organization_id, e.event_id
"""

LEDGER_COLUMNS = (
    "organization_id", "event_id", "type", "status", "is_refund", "refund_of", "profile_id", "partner_profile_id",
    "split_percent", "customer_id", "amount_minor", "currency", "platform_fee_minor", "service_fee_minor",
    "processor_fee_minor", "category", "order_id", "occurred_at", "metadata",
)  # fmt: skip
_COLUMN_TYPES = (
    "uuid", "text", "text", "text", "boolean", "text", "uuid", "uuid", "smallint", "text", "bigint", "text", "bigint",
    "bigint", "bigint", "text", "text", "timestamptz", "jsonb",
)  # fmt: skip
_INSERT = f"""
INSERT INTO transactions ({", ".join(LEDGER_COLUMNS)})
SELECT * FROM unnest({", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_COLUMN_TYPES))})
ON CONFLICT (organization_id, event_id) DO NOTHING
RETURNING {", ".join(LEDGER_COLUMNS)}
"""
_INSERT_PAYOUTS = """
INSERT INTO payouts (organization_id, event_id, payout_id, profile_id, amount_minor, currency, occurred_at, metadata)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bigint[], $6::text[], $7::timestamptz[], $8::jsonb[])
ON CONFLICT (organization_id, event_id) DO NOTHING
"""
# The sale a refund refers to: its originalEventId, else the latest sale with its orderId.
_ORIGINALS = """
SELECT DISTINCT ON (k.i) k.i, t.event_id, t.type, t.profile_id, t.partner_profile_id, t.split_percent, t.category,
       t.order_id, t.customer_id
FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS k(organization_id, original, order_id, i)
JOIN transactions t ON t.organization_id = k.organization_id AND NOT t.is_refund AND t.status <> 'failed'
 AND (t.event_id = k.original OR (k.original IS NULL AND t.order_id = k.order_id))
ORDER BY k.i, t.occurred_at DESC, t.event_id DESC
"""
# Sales refunded by the refunds just recorded, or by refunds recorded before them.
_MARK_REFUNDED = """
UPDATE transactions t SET status = 'refunded'
FROM unnest($1::uuid[], $2::text[]) AS k(organization_id, event_id)
WHERE t.organization_id = k.organization_id AND t.event_id = k.event_id AND t.status = 'completed' AND NOT t.is_refund
"""
# Refunds recorded before their sale, linked now that it has arrived. A refund names its sale
# the way _ORIGINALS reads it: by originalEventId when it has one, else by orderId. The link
# copies what a refund recorded after its sale would have taken from it.
_LINK_EARLY_REFUNDS = """
UPDATE transactions r SET refund_of = s.event_id, type = s.type, profile_id = s.profile_id,
       partner_profile_id = s.partner_profile_id, split_percent = s.split_percent, category = s.category,
       customer_id = COALESCE(s.customer_id, r.customer_id), order_id = COALESCE(r.order_id, s.order_id)
FROM unnest($1::uuid[], $2::text[]) AS k(organization_id, event_id)
JOIN transactions s ON s.organization_id = k.organization_id AND s.event_id = k.event_id
WHERE r.organization_id = s.organization_id AND r.is_refund AND r.refund_of IS NULL
  AND (r.metadata ->> 'originalEventId' = s.event_id
       OR (r.metadata ->> 'originalEventId' IS NULL AND r.order_id = s.order_id))
  AND NOT s.is_refund AND s.status <> 'failed'
RETURNING s.organization_id, s.event_id
"""


async def record_batch(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> LedgerEffects:
    """Record a claimed batch's money events in the caller's transaction (exactly once by event id)."""
    effects = LedgerEffects()
    claimed = [r for r in rows if r["type"] in LEDGER_EVENT_TYPES]
    if not claimed:
        return effects
    events = [dict(e, properties=orjson.loads(e["properties"])) for e in await conn.fetch(_LEDGER_EVENTS, *keys_of(claimed))]
    sales = [_sale(e) for e in events if e["type"] in SALE_TYPE]
    new_sales = await _insert(conn, sales)
    refunds = await _refunds(conn, [e for e in events if e["type"] == ORDER_REFUNDED])
    new_refunds = await _insert(conn, refunds)
    refunded = [(r["organization_id"], r["refund_of"]) for r in new_refunds if r["refund_of"] is not None]
    refunded += await _link_early_refunds(conn, [r for r in new_sales if r["status"] != "failed"])
    if refunded:
        await conn.execute(_MARK_REFUNDED, [k[0] for k in refunded], [k[1] for k in refunded])
    await _insert_payouts(conn, [e for e in events if e["type"] == PAYOUT_SETTLED])
    effects.organizations = {r["organization_id"] for r in (*new_sales, *new_refunds)}
    effects.gifts = [gift_message(r) for r in new_sales if r["type"] == "gift" and r["profile_id"] is not None]
    return effects


def _fee(properties: Mapping[str, Any], name: str) -> int:
    value = properties.get(name)
    return value if type(value) is int and value >= 0 else 0


def _text(properties: Mapping[str, Any], name: str) -> str | None:
    value = properties.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _sale(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """A ledger row for a sale or a failed payment."""
    props = event["properties"]
    kind = SALE_TYPE[event["type"]]
    partner = _text(props, "partnerProfileId") if kind == "booking" else None
    split = props.get("splitPercent") if type(props.get("splitPercent")) is int else event["duo_split_percent"]
    if event["type"] == PAYMENT_FAILED:
        status = "failed"
    else:
        status = "pending" if props.get("status") == "pending" else "completed"
    category = (_text(props, "category") or DEFAULT_GIFT_CATEGORY) if kind == "gift" else _text(props, "category")
    return (
        event["organization_id"], event["event_id"], kind, status, False, None, event["profile_id"],
        uuid.UUID(partner) if partner else None, split if partner else None, event["customer_id"],
        event["amount_minor"], event["currency"], _fee(props, "platformFeeMinor"), _fee(props, "serviceFeeMinor"),
        _fee(props, "processorFeeMinor"), category, _text(props, "orderId"), event["occurred_at"],
        orjson.dumps(props).decode(),
    )  # fmt: skip


async def _refunds(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Refund rows: negative, at the refund's time, carrying the refunded sale's type and profile."""
    if not events:
        return []
    found = await conn.fetch(
        _ORIGINALS,
        [e["organization_id"] for e in events],
        [_text(e["properties"], "originalEventId") for e in events],
        [_text(e["properties"], "orderId") for e in events],
    )
    originals = {r["i"] - 1: r for r in found}
    rows = []
    for i, event in enumerate(events):
        props, sale = event["properties"], originals.get(i)
        rows.append((
            event["organization_id"], event["event_id"], sale["type"] if sale else "order", "refunded", True,
            sale["event_id"] if sale else None, sale["profile_id"] if sale else event["profile_id"],
            sale["partner_profile_id"] if sale else None, sale["split_percent"] if sale else None,
            (sale["customer_id"] if sale else None) or event["customer_id"], -event["amount_minor"],
            event["currency"], _fee(props, "platformFeeMinor"), _fee(props, "serviceFeeMinor"),
            _fee(props, "processorFeeMinor"), sale["category"] if sale else _text(props, "category"),
            _text(props, "orderId") or (sale["order_id"] if sale else None), event["occurred_at"],
            orjson.dumps(props).decode(),
        ))  # fmt: skip
    return rows


async def _insert(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> list[asyncpg.Record]:
    """Only the rows new to the ledger come back: a re-run batch returns none."""
    if not rows:
        return []
    return await conn.fetch(_INSERT, *(list(column) for column in zip(*rows, strict=True)))


async def _link_early_refunds(conn: asyncpg.Connection, sales: list[asyncpg.Record]) -> list[tuple[uuid.UUID, str]]:
    """Refunds recorded before their sale arrived: link them now; the sale is refunded."""
    if not sales:
        return []
    linked = await conn.fetch(_LINK_EARLY_REFUNDS, [s["organization_id"] for s in sales], [s["event_id"] for s in sales])
    return [(r["organization_id"], r["event_id"]) for r in linked]


async def _insert_payouts(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    await conn.execute(
        _INSERT_PAYOUTS,
        [e["organization_id"] for e in events], [e["event_id"] for e in events],
        [_text(e["properties"], "payoutId") for e in events], [e["profile_id"] for e in events],
        [e["amount_minor"] for e in events], [e["currency"] for e in events], [e["occurred_at"] for e in events],
        [orjson.dumps(e["properties"]).decode() for e in events],
    )  # fmt: skip


def gift_message(row: Mapping[str, Any]) -> GiftPurchasedMessage:
    """What the worker publishes for a gift it recorded (a row of `transactions`)."""
    return GiftPurchasedMessage(
        event_id=row["event_id"], organization_id=row["organization_id"], profile_id=row["profile_id"],
        donor_id=row["customer_id"], amount_minor=row["amount_minor"], currency=row["currency"],
        category=row["category"], occurred_at=row["occurred_at"],
    )  # fmt: skip


# --------------------------------------------------------------------------- live counters


_COUNTERS = """
SELECT currency,
       COALESCE(sum(amount_minor) FILTER (WHERE status IN ('completed', 'refunded')), 0)::bigint AS amount,
       count(*) FILTER (WHERE status IN ('completed', 'refunded')) AS n,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM transactions
WHERE ($1::uuid IS NULL OR organization_id = $1) AND occurred_at >= $2 AND occurred_at < $3
GROUP BY currency ORDER BY currency
"""


async def counters(
    conn: asyncpg.Connection, organization_id: uuid.UUID | None, timezone: str = "UTC"
) -> RevenueCountersMessage:
    """Today's running revenue of one organization (its local day) or of the platform (the UTC
    day): revenue (refunds netted), revenue entries and failed payments since the day began."""
    now = utcnow()
    start = day_start(now, timezone)
    end = local_midnight(local_date(now, timezone) + timedelta(days=1), timezone)
    rows = await conn.fetch(_COUNTERS, organization_id, start, end)
    return RevenueCountersMessage(
        organization_id=organization_id, start=start, end=end,
        revenue=tuple((r["amount"], r["currency"]) for r in rows if r["n"]),
        transactions=sum(r["n"] for r in rows), failed_payments=sum(r["failed"] for r in rows), updated_at=now,
    )  # fmt: skip


async def live_messages(
    conn: asyncpg.Connection, ledger: LedgerEffects, followed: Collection[str]
) -> list[LiveMessage]:
    """After commit: each new gift to its profile's channel, fresh counters to each touched
    organization's channel and the platform's; only to the `followed` channels, so that
    counters nobody watches are not computed."""
    messages: list[LiveMessage] = [g for g in ledger.gifts if g.channel in followed]
    organizations = [org for org in ledger.organizations if RevenueCountersMessage.channel_of(str(org)) in followed]
    if organizations:
        zones = await conn.fetch("SELECT id, timezone FROM organizations WHERE id = ANY($1::uuid[])", organizations)
        for row in zones:
            messages.append(await counters(conn, row["id"], row["timezone"]))
    if ledger.organizations and RevenueCountersMessage.channel_of(None) in followed:
        messages.append(await counters(conn, None))
    return messages


# --------------------------------------------------------------------------- scope and money

# ISO 4217 minor-unit digits that are not 2 (conversion needs them: 1 JPY has no cents).
MINOR_DIGITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3, "CLF": 4, "UYW": 4,
}  # fmt: skip
MONEY_REFUSAL = "organization-wide money reports need an organization admin or platform admin token"
CURRENCY_RE = re.compile(r"[A-Z]{3}")


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency, 2)


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose money a report covers: an organization, or one of its profiles."""

    organization_id: uuid.UUID
    profile_id: uuid.UUID | None
    timezone: str
    reporting_currency: str | None
    rates: dict[str, Decimal]


async def money_scope(*, viewer: Viewer, profile_id: Any = None, organization_id: Any = None) -> Scope:
    """profileId: whoever may read the profile (providers their own); organizationId: its admins."""
    if profile_id is not None and organization_id is not None:
        raise BadInput("give profileId or organizationId, not both", field="organizationId")
    if profile_id is not None:
        profile = await readable_profile(viewer, profile_id)
        org, pid = uuid.UUID(str(profile.organization_id)), profile.id
    else:
        org, pid = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL), None
    async with connection() as conn:
        row = await conn.fetchrow("SELECT timezone, reporting_currency FROM organizations WHERE id = $1", org)
        rates = await conn.fetch("SELECT currency, rate FROM exchange_rates WHERE organization_id = $1", org)
    if row is None:
        raise NotFound("organization not found", field="organizationId")
    return Scope(org, pid, row["timezone"], row["reporting_currency"], {r["currency"]: r["rate"] for r in rates})


def convert(amounts: Mapping[str, int], scope: Scope) -> tuple[int | None, list[str]]:
    """The sum of per-currency totals in the reporting currency, or None with the currencies
    lacking a rate. Rule: each currency's total is converted once, exactly (Decimal), and
    rounded half-to-even to the reporting currency's minor unit; the rounded values are added."""
    target = scope.reporting_currency
    if target is None:
        return None, []
    missing = sorted(c for c in amounts if c != target and c not in scope.rates)
    if missing:
        return None, missing
    total = 0
    for currency, amount in amounts.items():
        rate = Decimal(1) if currency == target else scope.rates[currency]
        exact = Decimal(amount) * rate * Decimal(10) ** (minor_digits(target) - minor_digits(currency))
        total += int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return total, []


def clipped_buckets(span: TimeRange, grain: Grain) -> tuple[list[datetime], list[datetime]]:
    """Report buckets as [start, end) pairs clipped to the range (the first and last may be partial)."""
    starts = bucket_starts(span, grain)
    ends = [*starts[1:], span.end]
    return [max(s, span.start) for s in starts], [min(e, span.end) for e in ends]


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


class MoneyReport(QueryRunner[Scope, TimeRange, R]):
    """A money report of one profile (profile_id) or one organization (organization_id) over
    a range (time_range): the scope is `money_scope`'s, the plan the range in its zone."""

    async def scope(self) -> Scope:
        return await money_scope(
            viewer=self.viewer, profile_id=self.inputs.get("profile_id"), organization_id=self.inputs.get("organization_id")
        )

    def plan(self, scope: Scope) -> TimeRange:
        return resolve_range(self.inputs["time_range"], scope.timezone)


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


def add_to(totals: dict[str, int], currency: str, amount: int) -> None:
    totals[currency] = totals.get(currency, 0) + amount


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
                donor.purchases.append(row)
        return sorted(donors.values(), key=lambda d: (-len(d.purchases), d.donor_id))[: self.inputs["limit"]]


async def top_gift_donors(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec, limit: int = 10
) -> list[GiftDonor]:
    return await TopGiftDonorsQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, limit=limit
    ).run()


@dataclass(frozen=True, slots=True)
class MoneyChange:
    currency: str
    amount_minor: int
    percent: float | None  # None when the previous period had nothing in this currency


def changes(current: Mapping[str, int], previous: Mapping[str, int]) -> list[MoneyChange]:
    """Per currency: the difference to the previous period, and in percent of it."""
    out = []
    for currency in sorted(current.keys() | previous.keys()):
        now, before = current.get(currency, 0), previous.get(currency, 0)
        percent = round((now - before) * 100 / abs(before), 2) if before else None
        out.append(MoneyChange(currency, now - before, percent))
    return out


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


# --------------------------------------------------------------------------- settings

RATE_MAX = Decimal("1000000000000")


@dataclass(frozen=True, slots=True)
class MoneySettings:
    organization_id: uuid.UUID
    reporting_currency: str | None
    duo_split_percent: int
    rates: list[asyncpg.Record]


async def money_settings(*, viewer: Viewer, organization_id: Any = None) -> MoneySettings:
    """Reporting currency, its exchange rates and the default duo split of an organization."""
    org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
    async with connection() as conn:
        return await _settings(conn, org)


async def _settings(conn: asyncpg.Connection, org: uuid.UUID) -> MoneySettings:
    row = await conn.fetchrow("SELECT reporting_currency, duo_split_percent FROM organizations WHERE id = $1", org)
    rates = await conn.fetch(
        "SELECT currency, rate, updated_by, updated_at FROM exchange_rates WHERE organization_id = $1 ORDER BY currency", org
    )
    return MoneySettings(org, row["reporting_currency"], row["duo_split_percent"], rates)


def _currency(value: str, name: str) -> str:
    if not isinstance(value, str) or not CURRENCY_RE.fullmatch(value):
        raise BadInput(f"{name} must be an ISO 4217 code such as EUR", field=name)
    return value


def _rate(value: str, index: int) -> Decimal:
    """Decimal text, never a float: '0.0067' for JPY -> USD."""
    try:
        rate = Decimal(value)
    except (ArithmeticError, ValueError, TypeError):
        rate = Decimal(0)
    if not rate.is_finite() or not 0 < rate < RATE_MAX or rate != rate.quantize(Decimal("1e-12")):
        raise BadInput("rate must be a positive decimal with at most 12 decimal places", field=f"rates.{index}.rate")
    return rate


async def update_money_settings(
    *,
    viewer: Viewer,
    organization_id: Any = None,
    reporting_currency: str | None = None,
    clear_reporting_currency: bool = False,
    duo_split_percent: int | None = None,
    rates: Sequence[tuple[str, str]] | None = None,
) -> MoneySettings:
    """Change what is given; `rates` (currency, units of the reporting currency per unit) replaces the whole set."""
    org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
    target = _currency(reporting_currency, "reportingCurrency") if reporting_currency is not None else None
    if duo_split_percent is not None and not 1 <= duo_split_percent <= 99:
        raise BadInput("duoSplitPercent must be from 1 to 99", field="duoSplitPercent")
    checked = [(_currency(c, f"rates.{i}.currency"), _rate(r, i)) for i, (c, r) in enumerate(rates or [])]
    if len({c for c, _ in checked}) != len(checked):
        raise BadInput("each currency may have one rate", field="rates")
    async with transaction() as conn:
        await conn.execute(
            "UPDATE organizations SET reporting_currency = CASE WHEN $2 THEN NULL ELSE COALESCE($3, reporting_currency) END,"
            " duo_split_percent = COALESCE($4, duo_split_percent) WHERE id = $1",
            org, clear_reporting_currency, target, duo_split_percent,
        )  # fmt: skip
        if rates is not None:
            await conn.execute("DELETE FROM exchange_rates WHERE organization_id = $1", org)
            await conn.executemany(
                "INSERT INTO exchange_rates (organization_id, currency, rate, updated_by) VALUES ($1, $2, $3, $4)",
                [(org, c, r, viewer.subject) for c, r in checked],
            )
        return await _settings(conn, org)


async def counters_scope(*, viewer: Viewer, organization_id: Any = None) -> tuple[uuid.UUID | None, str]:
    """The organization a live counter follows (None: the platform, for platform admins) and its zone."""
    org = await administered_scope(viewer, organization_id, refusal=MONEY_REFUSAL)
    if org is None:
        return None, "UTC"
    async with connection() as conn:
        return org, await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)


async def current_counters(*, organization_id: uuid.UUID | None, timezone: str) -> RevenueCountersMessage:
    async with connection() as conn:
        return await counters(conn, organization_id, timezone)


class LedgerConsumer(Consumer):
    """Money events into the ledger; new gifts and fresh revenue counters live."""

    name = "revenue"
    event_types = LEDGER_EVENT_TYPES

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> LedgerEffects:
        return await record_batch(conn, rows)

    def channels(self, batch: Batch) -> set[str]:
        return batch.effects[self.name].channels

    async def totals(self, batch: Batch, followed: Collection[str]) -> list[LiveMessage]:
        ledger: LedgerEffects = batch.effects[self.name]
        if not followed & ledger.channels:  # type: ignore[operator]
            return []
        async with connection() as conn:
            return await live_messages(conn, ledger, followed)
