"""The money ledger: the worker's write path, from domain events to `transactions` and
`payouts`, and the live messages it sends after commit.

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
- marketplace.converted is an order sale; every sale records its creator (properties.creatorId,
  else its profile; a refund copies its sale's) and its platform fee from properties.takeRateBps
  when properties.platformFeeMinor is absent (`contract.platform_fee`).

Revenue of a period = the sum of the amounts of its completed and refunded rows, refunds
(negative) included: a refund reduces the revenue of the period it happened in and leaves
the period of the sale alone. Fees (properties.platformFeeMinor, serviceFeeMinor,
processorFeeMinor) are kept per row for gross profit (app/services/pnl.py).

The customer (donor for gifts) is the event's visitor id: u:<userId>, else a:<anonymousId>,
else the cookie-less hash (one namespace, so a user id never collides with a device id).
The buyer is also known by `buyer_email_hash`: the keyed hash ingestion put in place of
properties.buyerEmail (a refund without one takes its sale's), for the support search.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from app.consumers import Batch, Consumer
from app.database import connection
from app.live_messages import GiftPurchasedMessage, LiveMessage, RevenueCountersMessage
from app.services.buyer_emails import BUYER_EMAIL_HASH
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.services.revenue.contract import DEFAULT_GIFT_CATEGORY, SALE_TYPE, platform_fee
from app.services.revenue.counters import counters
from app.vocabulary import LEDGER_EVENT_TYPES, ORDER_REFUNDED, PAYMENT_FAILED, PAYOUT_SETTLED


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
    "processor_fee_minor", "category", "order_id", "occurred_at", "metadata", "creator_id", "buyer_email_hash",
)  # fmt: skip
_COLUMN_TYPES = (
    "uuid", "text", "text", "text", "boolean", "text", "uuid", "uuid", "smallint", "text", "bigint", "text", "bigint",
    "bigint", "bigint", "text", "text", "timestamptz", "jsonb", "text", "text",
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
       t.order_id, t.customer_id, t.creator_id, t.buyer_email_hash
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
       customer_id = COALESCE(s.customer_id, r.customer_id), order_id = COALESCE(r.order_id, s.order_id),
       creator_id = s.creator_id, buyer_email_hash = COALESCE(r.buyer_email_hash, s.buyer_email_hash)
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
        event["amount_minor"], event["currency"], platform_fee(props, event["amount_minor"]),
        _fee(props, "serviceFeeMinor"), _fee(props, "processorFeeMinor"), category, _text(props, "orderId"),
        event["occurred_at"], orjson.dumps(props).decode(), _creator(props, event["profile_id"]),
        _text(props, BUYER_EMAIL_HASH),
    )  # fmt: skip


def _creator(properties: Mapping[str, Any], profile_id: uuid.UUID | None) -> str | None:
    """Who earns a sale: properties.creatorId, else its profile."""
    return _text(properties, "creatorId") or (str(profile_id) if profile_id is not None else None)


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
            orjson.dumps(props).decode(), sale["creator_id"] if sale else _creator(props, event["profile_id"]),
            _text(props, BUYER_EMAIL_HASH) or (sale["buyer_email_hash"] if sale else None),
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
