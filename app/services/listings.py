"""Ticketed events ("listings") as their own events describe them, and the tickets orders sold.

A listing is named by properties.listingId within its organization. Its title, start and end
are those of its latest listing.published (by occurredAt, then eventId). It is ended once a
listing.ended was received or its endsAt has passed; otherwise live once a listing.started was
received or its startsAt has passed; scheduled before that. The events win over the schedule
(a show that started early is live), and the schedule stands in for an event never sent. Nothing is stored besides the events: the outbox refuses a repeated
eventId, so publishing the same event twice changes nothing.

Tickets: an order.paid sale (completed or refunded, before refunds) with properties.listingId
sold properties.quantity tickets (1 when absent). Average ticket price per currency: those
orders' amounts / their tickets, rounded half-to-even to the minor unit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum
from typing import Any

import asyncpg

from app.timebuckets import utcnow
from app.vocabulary import LISTING_ENDED, LISTING_EVENT_TYPES, LISTING_PUBLISHED, LISTING_STARTED, ORDER_PAID

ID_MAX_CHARS = 200
TITLE_MAX_CHARS = 500
QUANTITY_MAX = 100_000


class ListingStatus(Enum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


# --------------------------------------------------------------------------- validation


def _text(properties: Mapping[str, Any], name: str, limit: int) -> tuple[str, str] | None:
    value = properties.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        return f"properties.{name}", f"properties.{name} must be printable text of 1 to {limit} characters"
    return None


def _instant(properties: Mapping[str, Any], name: str) -> datetime | tuple[str, str]:
    value = properties.get(name)
    problem = f"properties.{name}", f"properties.{name} must be an ISO 8601 date-time with a UTC offset"
    if not isinstance(value, str):
        return problem
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return problem
    return moment if moment.utcoffset() is not None else problem


def _check_published(properties: Mapping[str, Any]) -> tuple[str, str] | None:
    problem = _text(properties, "title", TITLE_MAX_CHARS)
    if problem:
        return problem
    starts, ends = _instant(properties, "startsAt"), _instant(properties, "endsAt")
    if isinstance(starts, tuple):
        return starts
    if isinstance(ends, tuple):
        return ends
    if ends <= starts:
        return "properties.endsAt", "properties.endsAt must be after properties.startsAt"
    return None


def _check_order(properties: Mapping[str, Any]) -> tuple[str, str] | None:
    """Only orders selling tickets (naming a listing): other orders keep counting an unusable
    quantity as 1, as they always did."""
    if "listingId" not in properties:
        return None
    if problem := _text(properties, "listingId", ID_MAX_CHARS):
        return problem
    quantity = properties.get("quantity")
    if quantity is not None and (type(quantity) is not int or not 1 <= quantity <= QUANTITY_MAX):
        return "properties.quantity", f"properties.quantity must be an integer from 1 to {QUANTITY_MAX}"
    return None


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """(field, reason) of the first bad listing or ticket property, None when they are fine:
    the listing reports cast them without a second look."""
    if event_type == ORDER_PAID:
        return _check_order(properties) if isinstance(properties, Mapping) else None
    if event_type not in LISTING_EVENT_TYPES:
        return None
    if not isinstance(properties, Mapping):
        return "properties.listingId", f"{event_type} needs properties.listingId"
    problem = _text(properties, "listingId", ID_MAX_CHARS)
    if problem is None and event_type == LISTING_PUBLISHED:
        problem = _check_published(properties)
    return problem


# --------------------------------------------------------------------------- reading


_LISTINGS = f"""
WITH published AS (
    SELECT DISTINCT ON (organization_id, properties ->> 'listingId')
           organization_id, properties ->> 'listingId' AS listing_id, properties ->> 'title' AS title,
           (properties ->> 'startsAt')::timestamptz AS starts_at, (properties ->> 'endsAt')::timestamptz AS ends_at
    FROM events
    WHERE type = '{LISTING_PUBLISHED}' AND ($1::uuid IS NULL OR organization_id = $1)
    ORDER BY organization_id, properties ->> 'listingId', occurred_at DESC, event_id DESC
), marks AS (
    SELECT organization_id, properties ->> 'listingId' AS listing_id,
           bool_or(type = '{LISTING_STARTED}') AS started, bool_or(type = '{LISTING_ENDED}') AS ended
    FROM events
    WHERE type IN ('{LISTING_STARTED}', '{LISTING_ENDED}') AND ($1::uuid IS NULL OR organization_id = $1)
    GROUP BY 1, 2
)
SELECT p.organization_id, p.listing_id, p.title, p.starts_at, p.ends_at,
       COALESCE(m.started, false) AS started, COALESCE(m.ended, false) AS ended
FROM published p LEFT JOIN marks m USING (organization_id, listing_id)
"""


@dataclass(frozen=True, slots=True)
class Listing:
    organization_id: uuid.UUID
    id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    status: ListingStatus


def _status(started: bool, ended: bool, starts_at: datetime, ends_at: datetime, now: datetime) -> ListingStatus:
    if ended or ends_at <= now:
        return ListingStatus.ENDED
    return ListingStatus.LIVE if started or starts_at <= now else ListingStatus.SCHEDULED


async def listings(conn: asyncpg.Connection, organization_id: uuid.UUID | None) -> list[Listing]:
    """Every published listing of the organization (or of the platform) with its status now."""
    now = utcnow()
    return [
        Listing(r["organization_id"], r["listing_id"], r["title"], r["starts_at"], r["ends_at"],
                _status(r["started"], r["ended"], r["starts_at"], r["ends_at"], now))
        for r in await conn.fetch(_LISTINGS, organization_id)
    ]  # fmt: skip


_TICKETS = """
SELECT b.i - 1 AS i, t.currency,
       sum(CASE WHEN (t.metadata ->> 'quantity') ~ '^[0-9]{1,9}$' AND (t.metadata ->> 'quantity')::bigint > 0
                THEN (t.metadata ->> 'quantity')::bigint ELSE 1 END)::bigint AS tickets,
       sum(t.amount_minor)::bigint AS amount
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN transactions t ON t.occurred_at >= b.s AND t.occurred_at < b.e AND ($1::uuid IS NULL OR t.organization_id = $1)
WHERE t.status IN ('completed', 'refunded') AND NOT t.is_refund AND t.type = 'order' AND t.metadata ? 'listingId'
  AND (NOT $4::boolean OR (t.organization_id, t.metadata ->> 'listingId') IN (SELECT * FROM unnest($5::uuid[], $6::text[])))
GROUP BY b.i, t.currency
"""


def half_even(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(slots=True)
class TicketWindow:
    """Tickets sold for listings in one [start, end), and what they were sold for, per currency."""

    tickets_by_currency: dict[str, int] = field(default_factory=dict)
    amount: dict[str, int] = field(default_factory=dict)

    @property
    def tickets(self) -> int:
        return sum(self.tickets_by_currency.values())

    @property
    def average_price(self) -> dict[str, int]:
        return {c: half_even(self.amount[c], n) for c, n in self.tickets_by_currency.items() if n}


async def ticket_windows(
    conn: asyncpg.Connection,
    organization_id: uuid.UUID | None,
    starts: list[datetime],
    ends: list[datetime],
    only: list[Listing] | None = None,
) -> list[TicketWindow]:
    """Tickets of each [start, end); `only`: of these listings alone (a status filter)."""
    windows = [TicketWindow() for _ in starts]
    chosen = only or []
    rows = await conn.fetch(
        _TICKETS, organization_id, starts, ends, only is not None,
        [x.organization_id for x in chosen], [x.id for x in chosen],
    )  # fmt: skip
    for row in rows:
        window = windows[row["i"]]
        window.tickets_by_currency[row["currency"]] = row["tickets"]
        window.amount[row["currency"]] = row["amount"]
    return windows
