"""Platform KPIs and growth series for platform admins, and the organization lifecycle.

Platform reports have no single organization time zone: every window and bucket here is in
UTC (weeks start on Monday 00:00 UTC, months on the 1st 00:00 UTC).

Definitions (also in the schema descriptions and the README):
- An organization is suspended or active by its status (suspendOrganization /
  reinstateOrganization, audited). It is churned when it is not suspended and no event of
  it was received (outbox.received_at) in the last 90 days; one created less than 90 days
  ago without events is not churned yet. Active = neither suspended nor churned.
- GMV: the ledger's sales of type booking, gift, subscription and order that are completed
  or refunded, minus the refunds of those types, each in the period it happened (the
  ledger's revenue rule without affiliate commissions, which are not customer purchases).
  Pending and failed payments are never GMV. Per currency; nothing is converted, as there
  are no platform-level exchange rates.
- Orders: order.paid and booking.completed sales (completed or refunded; a refund does not
  remove the order). Tickets: the sum of properties.quantity of order.paid sales (1 when it
  is absent or not a positive integer). Average order value per currency: the orders'
  amounts (before refunds) / their number, rounded half-to-even to the minor unit.
- Fees: the ledger's platform, service and processor fee columns of every revenue entry
  (completed or refunded sales and refunds, affiliate commissions included). Net platform
  revenue = platform fees + service fees - processor fees.
- Active profiles of a bucket: profiles with at least one view (profile_events) in it.
- Ticketed events (listings, app/services/listings.py): total published; live now; upcoming:
  neither live nor ended, starting in the next 30 days; this month: starting in this UTC
  month; average per organization: total / organizations counted. Tickets sold and the
  average ticket price: order.paid sales naming a listing, all time; in the growth series
  per bucket, optionally only for listings that are live (or ended) now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

import asyncpg

from app.auth import Viewer, platform_admin_scope
from app.database import connection, transaction
from app.errors import BadInput, NotFound
from app.runners import QueryRunner, Tenant
from app.services import listings as listing_events
from app.services.listings import Listing, ListingStatus, TicketWindow
from app.services.revenue.money import add_to, clipped_buckets
from app.timebuckets import (
    EARLIEST_INSTANT,
    PRESET_GRAIN,
    Grain,
    Preset,
    RangeSpec,
    TimeRange,
    bucket_start,
    month_start,
    resolve_range,
    utcnow,
)

UTC_ZONE = "UTC"
CHURN_AFTER = timedelta(days=90)
GMV_TYPES = ["booking", "gift", "subscription", "order"]
ORDER_TYPES = ["order", "booking"]
PLATFORM_REFUSAL = "platform reports need a platform admin token"
REASON_MAX_CHARS = 500


def half_even(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# --------------------------------------------------------------------------- money per window

_MONEY = """
SELECT b.i - 1 AS i, t.currency,
       COALESCE(sum(t.amount_minor) FILTER (WHERE t.type = ANY($4::text[])), 0)::bigint AS gmv,
       count(*) FILTER (WHERE NOT t.is_refund AND t.type = ANY($5::text[])) AS orders,
       COALESCE(sum(t.amount_minor) FILTER (WHERE NOT t.is_refund AND t.type = ANY($5::text[])), 0)::bigint AS order_value,
       COALESCE(sum(CASE WHEN (t.metadata ->> 'quantity') ~ '^[0-9]{1,9}$' AND (t.metadata ->> 'quantity')::bigint > 0
                         THEN (t.metadata ->> 'quantity')::bigint ELSE 1 END)
                FILTER (WHERE NOT t.is_refund AND t.type = 'order'), 0)::bigint AS tickets,
       sum(t.platform_fee_minor)::bigint AS platform_fees, sum(t.service_fee_minor)::bigint AS service_fees,
       sum(t.processor_fee_minor)::bigint AS processor_fees
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN transactions t ON t.occurred_at >= b.s AND t.occurred_at < b.e AND ($1::uuid IS NULL OR t.organization_id = $1)
WHERE t.status IN ('completed', 'refunded')
GROUP BY b.i, t.currency
ORDER BY b.i, t.currency
"""


@dataclass(slots=True)
class MoneyWindow:
    """The platform's money of one [start, end), per currency."""

    start: datetime
    end: datetime
    gmv: dict[str, int] = field(default_factory=dict)
    orders_by_currency: dict[str, int] = field(default_factory=dict)
    order_value: dict[str, int] = field(default_factory=dict)
    tickets: int = 0
    platform_fees: dict[str, int] = field(default_factory=dict)
    service_fees: dict[str, int] = field(default_factory=dict)
    processor_fees: dict[str, int] = field(default_factory=dict)

    @property
    def orders(self) -> int:
        return sum(self.orders_by_currency.values())

    @property
    def average_order_value(self) -> dict[str, int]:
        return {c: half_even(self.order_value[c], n) for c, n in self.orders_by_currency.items() if n}

    @property
    def net_platform_revenue(self) -> dict[str, int]:
        currencies = self.platform_fees.keys() | self.service_fees.keys() | self.processor_fees.keys()
        return {
            c: self.platform_fees.get(c, 0) + self.service_fees.get(c, 0) - self.processor_fees.get(c, 0)
            for c in currencies
        }


async def money_windows(
    conn: asyncpg.Connection, organization_id: uuid.UUID | None, starts: list[datetime], ends: list[datetime]
) -> list[MoneyWindow]:
    """GMV, orders, tickets and fees of each [start, end), from the ledger."""
    windows = [MoneyWindow(s, e) for s, e in zip(starts, ends, strict=True)]
    for row in await conn.fetch(_MONEY, organization_id, starts, ends, GMV_TYPES, ORDER_TYPES):
        window, currency = windows[row["i"]], row["currency"]
        add_to(window.gmv, currency, row["gmv"])
        window.orders_by_currency[currency] = row["orders"]
        add_to(window.order_value, currency, row["order_value"])
        window.tickets += row["tickets"]
        add_to(window.platform_fees, currency, row["platform_fees"])
        add_to(window.service_fees, currency, row["service_fees"])
        add_to(window.processor_fees, currency, row["processor_fees"])
    return windows


# --------------------------------------------------------------------------- organizations

_ORGANIZATIONS = """
SELECT o.id, o.name, o.status, o.created_at, o.status_changed_at, o.status_changed_by, o.status_reason,
       (SELECT max(x.received_at) FROM outbox x WHERE x.organization_id = o.id) AS last_event_at
FROM organizations o
WHERE $1::uuid IS NULL OR o.id = $1
ORDER BY o.name, o.id
"""


@dataclass(frozen=True, slots=True)
class OrganizationState:
    id: uuid.UUID
    name: str
    status: str
    created_at: datetime
    last_event_at: datetime | None
    churned: bool
    status_changed_at: datetime | None
    status_changed_by: str | None
    status_reason: str | None

    @property
    def active(self) -> bool:
        return self.status == "active" and not self.churned


def is_churned(status: str, created_at: datetime, last_event_at: datetime | None, now: datetime) -> bool:
    """Not suspended, and nothing received for 90 days (nor ever, once 90 days old)."""
    return status != "suspended" and (last_event_at or created_at) < now - CHURN_AFTER


async def organization_states(conn: asyncpg.Connection, organization_id: uuid.UUID | None, now: datetime) -> list[OrganizationState]:
    rows = await conn.fetch(_ORGANIZATIONS, organization_id)
    return [
        OrganizationState(
            id=r["id"], name=r["name"], status=r["status"], created_at=r["created_at"], last_event_at=r["last_event_at"],
            churned=is_churned(r["status"], r["created_at"], r["last_event_at"], now),
            status_changed_at=r["status_changed_at"], status_changed_by=r["status_changed_by"], status_reason=r["status_reason"],
        )  # fmt: skip
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class OrganizationCounts:
    total: int
    active: int
    suspended: int
    churned: int
    new_this_week: int
    new_this_month: int
    new_last_month: int
    before_this_month: int

    @property
    def month_over_month_growth(self) -> float | None:
        """Organizations created this month / organizations that existed before it, in percent."""
        return round(self.new_this_month * 100 / self.before_this_month, 2) if self.before_this_month else None


def count_organizations(states: list[OrganizationState], windows: UtcWindows) -> OrganizationCounts:
    created = [s.created_at for s in states]
    return OrganizationCounts(
        total=len(states), active=sum(s.active for s in states), suspended=sum(s.status == "suspended" for s in states),
        churned=sum(s.churned for s in states), new_this_week=sum(c >= windows.week for c in created),
        new_this_month=sum(c >= windows.this_month for c in created),
        new_last_month=sum(windows.last_month <= c < windows.this_month for c in created),
        before_this_month=sum(c < windows.this_month for c in created),
    )  # fmt: skip


# --------------------------------------------------------------------------- KPIs


@dataclass(frozen=True, slots=True)
class UtcWindows:
    now: datetime
    week: datetime
    this_month: datetime
    last_month: datetime


def utc_windows(now: datetime) -> UtcWindows:
    this_month = month_start(now, UTC_ZONE)
    return UtcWindows(
        now=now, week=bucket_start(now, Grain.WEEK, UTC_ZONE), this_month=this_month,
        last_month=month_start(this_month - timedelta(days=1), UTC_ZONE),
    )  # fmt: skip


UPCOMING_WITHIN = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class ListingCounts:
    total: int
    live_now: int
    upcoming: int
    this_month: int
    average_per_organization: float | None
    tickets: TicketWindow


def count_listings(found: list[Listing], organizations: int, windows: UtcWindows, tickets: TicketWindow) -> ListingCounts:
    next_month = month_start(windows.this_month + timedelta(days=32), UTC_ZONE)
    soon = windows.now + UPCOMING_WITHIN
    return ListingCounts(
        total=len(found), live_now=sum(x.status is ListingStatus.LIVE for x in found),
        upcoming=sum(x.status is ListingStatus.SCHEDULED and windows.now <= x.starts_at < soon for x in found),
        this_month=sum(windows.this_month <= x.starts_at < next_month for x in found),
        average_per_organization=round(len(found) / organizations, 2) if organizations else None, tickets=tickets,
    )  # fmt: skip


_PEOPLE = """
SELECT (SELECT count(*) FROM users u WHERE $1::uuid IS NULL
          OR EXISTS (SELECT 1 FROM memberships m WHERE m.organization_id = $1 AND m.user_id = u.id)) AS users,
       (SELECT count(*) FROM profiles p WHERE p.kind = 'creator' AND ($1::uuid IS NULL OR p.organization_id = $1)) AS creators,
       (SELECT count(*) FROM profiles p WHERE p.kind = 'brand' AND ($1::uuid IS NULL OR p.organization_id = $1)) AS brands,
       (SELECT count(*) FROM profiles p WHERE p.kind = 'provider' AND ($1::uuid IS NULL OR p.organization_id = $1)) AS providers
"""


@dataclass(frozen=True, slots=True)
class PeopleCounts:
    """User accounts (of an organization: its members), and profiles by kind."""

    users: int
    creators: int
    brands: int
    providers: int


async def count_people(conn: asyncpg.Connection, organization_id: uuid.UUID | None) -> PeopleCounts:
    row = await conn.fetchrow(_PEOPLE, organization_id)
    return PeopleCounts(row["users"], row["creators"], row["brands"], row["providers"])


@dataclass(frozen=True, slots=True)
class Kpis:
    organization_id: uuid.UUID | None
    windows: UtcWindows
    organizations: OrganizationCounts
    this_month: MoneyWindow
    last_month: MoneyWindow
    all_time: MoneyWindow
    listings: ListingCounts
    people: PeopleCounts


P = TypeVar("P")
R = TypeVar("R")


class PlatformReport(QueryRunner[uuid.UUID | None, P, R]):
    """A platform admin's report over every organization, or the one named (organization_id)."""

    async def scope(self) -> uuid.UUID | None:
        return await platform_admin_scope(self.viewer, self.inputs.get("organization_id"), refusal=PLATFORM_REFUSAL)

    def tenant(self, scope: uuid.UUID | None) -> Tenant:
        return Tenant(scope)


class KpisQuery(PlatformReport[UtcWindows, Kpis]):
    """Organization counts and money for this month (to now), last month and all time, in UTC."""

    kind = "platform_kpis"
    cacheable = False  # counts organizations, which the command line creates unannounced

    def plan(self, org: uuid.UUID | None) -> UtcWindows:
        return utc_windows(utcnow())

    async def fetch(self, org: uuid.UUID | None, windows: UtcWindows) -> Kpis:
        starts = [windows.this_month, windows.last_month, EARLIEST_INSTANT]
        ends = [windows.now, windows.this_month, windows.now]
        async with connection() as conn:
            states = await organization_states(conn, org, windows.now)
            this_month, last_month, all_time = await money_windows(conn, org, starts, ends)
            found = await listing_events.listings(conn, org)
            [tickets] = await listing_events.ticket_windows(conn, org, [EARLIEST_INSTANT], [windows.now])
            people = await count_people(conn, org)
        listing_counts = count_listings(found, len(states), windows, tickets)
        return Kpis(org, windows, count_organizations(states, windows), this_month, last_month, all_time, listing_counts, people)


async def kpis(*, viewer: Viewer, organization_id: Any = None) -> Kpis:
    return await KpisQuery(viewer=viewer, organization_id=organization_id).run()


# --------------------------------------------------------------------------- growth series


def growth_range(preset: Preset | None, custom: RangeSpec, grain: Grain | None, now: datetime) -> tuple[TimeRange, Grain]:
    """The range (in UTC) and bucket size: day presets by day, 12 months by month, custom ranges
    by `grain` (DAY unless given) within resolve_range's limits."""
    spec = RangeSpec(preset=preset, start=custom.start, end=custom.end) if preset is not None else custom
    default = PRESET_GRAIN.get(preset, Grain.DAY)
    return resolve_range(spec, UTC_ZONE, now=now), grain or default


_NEW_ORGANIZATIONS = """
SELECT b.i - 1 AS i, count(o.id) AS n
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN organizations o ON o.created_at >= b.s AND o.created_at < b.e AND ($1::uuid IS NULL OR o.id = $1)
GROUP BY b.i
"""
_ACTIVE_PROFILES = """
SELECT b.i - 1 AS i, count(DISTINCT p.profile_id) AS n
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN profile_events p ON p.occurred_at >= b.s AND p.occurred_at < b.e AND p.kind = 'view'
 AND ($1::uuid IS NULL OR p.organization_id = $1)
GROUP BY b.i
"""


@dataclass(slots=True)
class GrowthPoint:
    money: MoneyWindow
    tickets: TicketWindow
    new_organizations: int = 0
    active_profiles: int = 0


@dataclass(frozen=True, slots=True)
class Growth:
    organization_id: uuid.UUID | None
    range: TimeRange
    grain: Grain
    listing_status: ListingStatus | None
    points: list[GrowthPoint]


class GrowthQuery(PlatformReport[tuple[TimeRange, Grain], Growth]):
    """GMV, new organizations, active profiles, net platform revenue and tickets per UTC bucket;
    tickets of the listings in one status now when `listing_status` is given."""

    kind = "platform_growth"
    cacheable = False  # counts organizations, which the command line creates unannounced

    def plan(self, org: uuid.UUID | None) -> tuple[TimeRange, Grain]:
        return growth_range(self.inputs.get("preset"), self.inputs.get("custom") or RangeSpec(), self.inputs.get("grain"), utcnow())

    async def fetch(self, org: uuid.UUID | None, plan: tuple[TimeRange, Grain]) -> Growth:
        span, grain = plan
        starts, ends = clipped_buckets(span, grain)
        status: ListingStatus | None = self.inputs.get("listing_status")
        async with connection() as conn:
            only = None
            if status is not None:
                only = [x for x in await listing_events.listings(conn, org) if x.status is status]
            tickets = await listing_events.ticket_windows(conn, org, starts, ends, only)
            points = [GrowthPoint(w, t) for w, t in zip(await money_windows(conn, org, starts, ends), tickets, strict=True)]
            for row in await conn.fetch(_NEW_ORGANIZATIONS, org, starts, ends):
                points[row["i"]].new_organizations = row["n"]
            for row in await conn.fetch(_ACTIVE_PROFILES, org, starts, ends):
                points[row["i"]].active_profiles = row["n"]
        return Growth(org, span, grain, status, points)


async def growth(
    *,
    viewer: Viewer,
    organization_id: Any = None,
    preset: Preset | None = None,
    custom: RangeSpec = RangeSpec(),
    grain: Grain | None = None,
    listing_status: ListingStatus | None = None,
) -> Growth:
    return await GrowthQuery(
        viewer=viewer, organization_id=organization_id, preset=preset, custom=custom, grain=grain,
        listing_status=listing_status,
    ).run()  # fmt: skip


# --------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True, slots=True)
class StatusChange:
    action: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Lifecycle:
    state: OrganizationState
    history: list[StatusChange]


LIFECYCLE_LIMIT_MAX = 500


class LifecycleQuery(PlatformReport[None, list[Lifecycle]]):
    """The first `limit` organizations by name (or the one named) with status, churn, last event and status history."""

    kind = "platform_organizations"
    cacheable = False  # counts organizations, which the command line creates unannounced

    def validate(self, org: uuid.UUID | None) -> None:
        if not 1 <= self.inputs["limit"] <= LIFECYCLE_LIMIT_MAX:
            raise BadInput(f"limit must be from 1 to {LIFECYCLE_LIMIT_MAX}", field="limit")

    async def fetch(self, org: uuid.UUID | None, plan: None) -> list[Lifecycle]:
        async with connection() as conn:
            states = (await organization_states(conn, org, utcnow()))[: self.inputs["limit"]]
            history = await _history(conn, [s.id for s in states])
        return [Lifecycle(s, history.get(s.id, [])) for s in states]


async def organizations_lifecycle(*, viewer: Viewer, organization_id: Any = None, limit: int = 50) -> list[Lifecycle]:
    return await LifecycleQuery(viewer=viewer, organization_id=organization_id, limit=limit).run()


async def _history(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[StatusChange]]:
    rows = await conn.fetch(
        "SELECT organization_id, action, actor, reason, at FROM organization_status_audit"
        " WHERE organization_id = ANY($1::uuid[]) ORDER BY organization_id, id",
        ids,
    )
    out: dict[uuid.UUID, list[StatusChange]] = {}
    for r in rows:
        out.setdefault(r["organization_id"], []).append(StatusChange(r["action"], r["actor"], r["reason"], r["at"]))
    return out


def _reason(value: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > REASON_MAX_CHARS:
        raise BadInput(f"reason must be text of 1 to {REASON_MAX_CHARS} characters", field="reason")
    return text


async def set_status(*, viewer: Viewer, organization_id: Any, suspend: bool, reason: str) -> Lifecycle:
    """Suspend or reinstate an organization (platform admins), audited with who, when and why;
    suspending a suspended organization (or reinstating an active one) is refused."""
    org = await platform_admin_scope(viewer, organization_id, refusal=PLATFORM_REFUSAL)
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    text = _reason(reason)
    wanted, action = ("suspended", "suspended") if suspend else ("active", "reinstated")
    async with transaction() as conn:
        current = await conn.fetchval("SELECT status FROM organizations WHERE id = $1 FOR UPDATE", org)
        if current is None:
            raise NotFound("organization not found", field="organizationId")
        if current == wanted:
            raise BadInput(f"the organization is already {wanted}", field="organizationId")
        await conn.execute(
            "UPDATE organizations SET status = $2, status_changed_at = clock_timestamp(), status_changed_by = $3,"
            " status_reason = $4 WHERE id = $1",
            org, wanted, viewer.subject, text,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO organization_status_audit (organization_id, action, actor, reason) VALUES ($1, $2, $3, $4)",
            org, action, viewer.subject, text,
        )  # fmt: skip
        [state] = await organization_states(conn, org, utcnow())
        history = await _history(conn, [org])
    return Lifecycle(state, history.get(org, []))
