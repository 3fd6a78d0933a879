"""Ticketed events (listings): what the worker records from listing events, and the figures
platform reports read from them.

- `listing.published` (properties.listingId, title, startsAt, endsAt; ISO 8601 with offset,
  endsAt after startsAt) records or updates a listing: a later publication's details win.
- `listing.started` / `listing.ended` (properties.listingId) record when it actually started
  and ended: the first report of each counts.
- A listing is *live* at an instant when it has started (reported, else by startsAt) and not
  ended (reported, else by endsAt); *ended* after that; *upcoming* before its start.
- Tickets are order.paid sales naming the listing (properties.listingId), properties.quantity
  tickets each (1 when absent or not a positive integer); the average ticket price of a
  currency is those orders' amounts over their tickets, rounded half-to-even.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from app.consumers import Batch, Consumer
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.vocabulary import LISTING_ENDED, LISTING_EVENT_TYPES, LISTING_PUBLISHED, LISTING_STARTED

TEXT_MAX_CHARS = 500
UPCOMING_WINDOW = timedelta(days=30)
STATUSES = ("live", "ended", "upcoming")


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """The listing properties the worker reads, checked at ingestion: (field, reason) or None."""
    if event_type not in LISTING_EVENT_TYPES:
        return None
    props = properties if isinstance(properties, Mapping) else {}
    if _text(props.get("listingId")) is None:
        return "properties.listingId", f"properties.listingId must be text of 1 to {TEXT_MAX_CHARS} characters"
    if event_type != LISTING_PUBLISHED:
        return None
    if _text(props.get("title")) is None:
        return "properties.title", f"properties.title must be text of 1 to {TEXT_MAX_CHARS} characters"
    starts, ends = _instant(props.get("startsAt")), _instant(props.get("endsAt"))
    if starts is None:
        return "properties.startsAt", "properties.startsAt must be an ISO 8601 date-time with an offset"
    if ends is None:
        return "properties.endsAt", "properties.endsAt must be an ISO 8601 date-time with an offset"
    if ends <= starts:
        return "properties.endsAt", "properties.endsAt must be after properties.startsAt"
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() and len(value) <= TEXT_MAX_CHARS else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


# --------------------------------------------------------------------------- the worker's side

_LISTING_EVENTS = f"""
SELECT e.organization_id, e.event_id, e.type, e.properties, e.occurred_at
FROM {CLAIMED_EVENTS}
ORDER BY e.occurred_at, e.event_id
"""
_PUBLISH = """
INSERT INTO listings AS l (organization_id, listing_id, title, starts_at, ends_at, published_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[])
ORDER BY 1, 2
ON CONFLICT (organization_id, listing_id) DO UPDATE
SET title = EXCLUDED.title, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, published_at = EXCLUDED.published_at
WHERE l.published_at IS NULL OR EXCLUDED.published_at >= l.published_at
"""
_MARK = """
INSERT INTO listings AS l (organization_id, listing_id, {column})
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
ORDER BY 1, 2
ON CONFLICT (organization_id, listing_id) DO UPDATE
SET {column} = EXCLUDED.{column}
WHERE l.{column} IS NULL OR EXCLUDED.{column} < l.{column}
"""


async def record_listings(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record a claimed batch's listing events in the caller's transaction (a re-run batch
    changes nothing: the latest publication and the first start and end win)."""
    claimed = [r for r in rows if r["type"] in LISTING_EVENT_TYPES]
    if not claimed:
        return
    events = [dict(e, properties=orjson.loads(e["properties"])) for e in await conn.fetch(_LISTING_EVENTS, *keys_of(claimed))]
    published = _one_per_listing([e for e in events if e["type"] == LISTING_PUBLISHED], latest=True)
    if published:
        await conn.execute(_PUBLISH, *_columns(published, lambda e: (
            e["organization_id"], e["properties"]["listingId"], e["properties"]["title"],
            _instant(e["properties"]["startsAt"]), _instant(e["properties"]["endsAt"]), e["occurred_at"])))  # fmt: skip
    for event_type, column in ((LISTING_STARTED, "started_at"), (LISTING_ENDED, "ended_at")):
        marked = _one_per_listing([e for e in events if e["type"] == event_type], latest=False)
        if marked:
            await conn.execute(_MARK.format(column=column), *_columns(marked, lambda e: (
                e["organization_id"], e["properties"]["listingId"], e["occurred_at"])))  # fmt: skip


def _one_per_listing(events: list[dict[str, Any]], *, latest: bool) -> list[dict[str, Any]]:
    """One event per listing (events are in time order), as one upsert may not touch a row twice."""
    chosen: dict[tuple[Any, str], dict[str, Any]] = {}
    for event in events:
        key = (event["organization_id"], event["properties"]["listingId"])
        if latest or key not in chosen:
            chosen[key] = event
    return list(chosen.values())


def _columns(events: list[dict[str, Any]], row: Any) -> list[list[Any]]:
    return [list(column) for column in zip(*(row(e) for e in events), strict=True)]


class ListingConsumer(Consumer):
    """listing.published / started / ended into the listings table."""

    name = "listings"
    event_types = LISTING_EVENT_TYPES

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> None:
        await record_listings(conn, rows)


# --------------------------------------------------------------------------- the figures

# A listing's status at $2, as the module docstring defines it.
STATUS_AT = """
CASE WHEN COALESCE(l.ended_at, l.ends_at) <= $2 THEN 'ended'
     WHEN COALESCE(l.started_at, l.starts_at) <= $2 THEN 'live'
     ELSE 'upcoming' END
"""
_LISTING_COUNTS = f"""
SELECT count(*) AS total,
       count(*) FILTER (WHERE ({STATUS_AT}) = 'live') AS live,
       count(*) FILTER (WHERE ({STATUS_AT}) = 'upcoming' AND l.starts_at <= $2 + $3::interval) AS upcoming,
       count(*) FILTER (WHERE l.starts_at >= $4 AND l.starts_at < $5) AS this_month,
       count(DISTINCT l.organization_id) AS organizations
FROM listings l
WHERE ($1::uuid IS NULL OR l.organization_id = $1) AND l.published_at IS NOT NULL
"""
_TICKETS = """
SELECT t.currency,
       COALESCE(sum(CASE WHEN (t.metadata ->> 'quantity') ~ '^[0-9]{1,9}$' AND (t.metadata ->> 'quantity')::bigint > 0
                         THEN (t.metadata ->> 'quantity')::bigint ELSE 1 END), 0)::bigint AS tickets,
       COALESCE(sum(t.amount_minor), 0)::bigint AS amount
FROM transactions t
WHERE ($1::uuid IS NULL OR t.organization_id = $1) AND t.type = 'order' AND NOT t.is_refund
  AND t.status IN ('completed', 'refunded') AND t.metadata ->> 'listingId' IS NOT NULL
GROUP BY t.currency
"""


@dataclass(frozen=True, slots=True)
class ListingKpis:
    total: int  # published listings
    live: int
    upcoming_30_days: int
    this_month: int  # starting this UTC month
    organizations: int  # with at least one listing
    tickets_sold: int
    ticket_revenue: dict[str, int] = field(default_factory=dict)  # per currency, before refunds
    tickets_by_currency: dict[str, int] = field(default_factory=dict)

    @property
    def average_per_organization(self) -> float:
        return round(self.total / self.organizations, 2) if self.organizations else 0.0


async def listing_kpis(
    conn: asyncpg.Connection, organization_id: uuid.UUID | None, *, now: datetime, month: datetime, next_month: datetime
) -> ListingKpis:
    counts = await conn.fetchrow(_LISTING_COUNTS, organization_id, now, UPCOMING_WINDOW, month, next_month)
    tickets = await conn.fetch(_TICKETS, organization_id)
    return ListingKpis(
        total=counts["total"], live=counts["live"], upcoming_30_days=counts["upcoming"], this_month=counts["this_month"],
        organizations=counts["organizations"], tickets_sold=sum(r["tickets"] for r in tickets),
        ticket_revenue={r["currency"]: r["amount"] for r in tickets},
        tickets_by_currency={r["currency"]: r["tickets"] for r in tickets},
    )  # fmt: skip


# Per [start, end) bucket: listings starting in it, and the tickets of orders naming a listing,
# both only of listings whose status now is $5 when given.
_GROWTH_LISTINGS = f"""
SELECT b.i - 1 AS i, count(l.listing_id) AS started
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN listings l ON l.starts_at >= b.s AND l.starts_at < b.e AND ($1::uuid IS NULL OR l.organization_id = $1)
WHERE l.published_at IS NOT NULL AND ($5::text IS NULL OR ({STATUS_AT.replace("$2", "$4")}) = $5)
GROUP BY b.i
"""
_GROWTH_TICKETS = f"""
SELECT b.i - 1 AS i, t.currency,
       sum(CASE WHEN (t.metadata ->> 'quantity') ~ '^[0-9]{{1,9}}$' AND (t.metadata ->> 'quantity')::bigint > 0
                THEN (t.metadata ->> 'quantity')::bigint ELSE 1 END)::bigint AS tickets,
       sum(t.amount_minor)::bigint AS amount
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN transactions t ON t.occurred_at >= b.s AND t.occurred_at < b.e AND ($1::uuid IS NULL OR t.organization_id = $1)
LEFT JOIN listings l ON l.organization_id = t.organization_id AND l.listing_id = t.metadata ->> 'listingId'
WHERE t.type = 'order' AND NOT t.is_refund AND t.status IN ('completed', 'refunded')
  AND t.metadata ->> 'listingId' IS NOT NULL
  AND ($5::text IS NULL OR (l.listing_id IS NOT NULL AND ({STATUS_AT.replace("$2", "$4")}) = $5))
GROUP BY b.i, t.currency
"""


@dataclass(slots=True)
class ListingBucket:
    started: int = 0  # listings starting in the bucket
    tickets_by_currency: dict[str, int] = field(default_factory=dict)
    ticket_revenue: dict[str, int] = field(default_factory=dict)

    @property
    def tickets_sold(self) -> int:
        return sum(self.tickets_by_currency.values())


async def listing_buckets(
    conn: asyncpg.Connection, organization_id: uuid.UUID | None, starts: list[datetime], ends: list[datetime], *,
    now: datetime, status: str | None,
) -> list[ListingBucket]:  # fmt: skip
    buckets = [ListingBucket() for _ in starts]
    for row in await conn.fetch(_GROWTH_LISTINGS, organization_id, starts, ends, now, status):
        buckets[row["i"]].started = row["started"]
    for row in await conn.fetch(_GROWTH_TICKETS, organization_id, starts, ends, now, status):
        bucket = buckets[row["i"]]
        bucket.tickets_by_currency[row["currency"]] = row["tickets"]
        bucket.ticket_revenue[row["currency"]] = row["amount"]
    return buckets
