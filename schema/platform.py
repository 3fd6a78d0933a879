"""Platform KPIs, growth series and the organization lifecycle (platform admins only)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Granularity, Money, ResolvedRange
from schema.revenue import RevenueChange


@strawberry.enum(description="Whether an organization may use the platform (changed by platform admins, audited).")
class OrganizationStatus(Enum):
    ACTIVE = strawberry.enum_value("active", description="Not suspended.")
    SUSPENDED = strawberry.enum_value("suspended", description="Suspended by a platform admin.")


@strawberry.type(
    description="Organizations by lifecycle. Churned: not suspended and no event received in 90 days (one created "
    "less than 90 days ago is not churned yet); active: neither suspended nor churned. Weeks and months are UTC."
)
class OrganizationCounts:
    total: int = strawberry.field(description="Every organization (or the one filtered).")
    active: int = strawberry.field(description="Neither suspended nor churned.")
    suspended: int = strawberry.field(description="Status suspended.")
    churned: int = strawberry.field(description="Not suspended, no event received in the last 90 days.")
    new_this_week: int = strawberry.field(description="Created since Monday 00:00 UTC.")
    new_this_month: int = strawberry.field(description="Created since the 1st of this month, 00:00 UTC.")
    new_last_month: int = strawberry.field(description="Created in the previous UTC month.")
    month_over_month_growth_percent: float | None = strawberry.field(
        description="newThisMonth / organizations created before this month, in percent (2 decimals); null when there were none."
    )


@strawberry.type(
    description="Money of a UTC window, per currency (nothing is converted: there are no platform-level exchange rates)."
)
class PeriodKpis:
    from_: datetime = strawberry.field(name="from", description="Inclusive start (UTC).")
    to: datetime = strawberry.field(description="Exclusive end (UTC).")
    gmv: list[Money] = strawberry.field(
        description="Gross merchandise value: completed and refunded booking, gift, subscription and order sales minus "
        "their refunds, each in the period it happened (affiliate commissions, pending and failed payments excluded)."
    )
    orders: int = strawberry.field(description="order.paid and booking.completed sales (refunded ones included).")
    tickets: int = strawberry.field(
        description="Sum of properties.quantity of order.paid sales (1 when absent or not a positive integer)."
    )
    average_order_value: list[Money] = strawberry.field(
        description="Per currency: the orders' amounts (before refunds) / orders, rounded half-to-even to the minor unit."
    )
    platform_fees: list[Money] = strawberry.field(description="Platform fees of every revenue entry (sales, refunds, commissions).")
    service_fees: list[Money] = strawberry.field(description="Service fees of every revenue entry.")
    processor_fees: list[Money] = strawberry.field(description="Processor fees of every revenue entry.")
    net_platform_revenue: list[Money] = strawberry.field(description="platformFees + serviceFees - processorFees.")


@strawberry.enum(description="Where a ticketed event (listing) stands now, from its own events.")
class ListingStatus(Enum):
    SCHEDULED = strawberry.enum_value("scheduled", description="Published; neither started nor ended.")
    LIVE = strawberry.enum_value("live", description="A listing.started was received and no listing.ended.")
    ENDED = strawberry.enum_value("ended", description="A listing.ended was received.")


@strawberry.type(
    description="Ticketed events (listings): each is named by properties.listingId and described by its latest "
    "listing.published; times are UTC."
)
class ListingKpis:
    total: int = strawberry.field(description="Listings published (each counted once however often republished).")
    live_now: int = strawberry.field(description="Listings live now: started and not ended.")
    upcoming_next_30_days: int = strawberry.field(
        description="Listings neither live nor ended whose startsAt lies within the next 30 days."
    )
    this_month: int = strawberry.field(description="Listings whose startsAt lies in this UTC month.")
    average_per_organization: float | None = strawberry.field(
        description="total / organizations counted (2 decimals); null when there are none."
    )
    tickets_sold: int = strawberry.field(
        description="All time: sum of properties.quantity (1 when absent) of order.paid sales naming a "
        "properties.listingId (completed or refunded, before refunds)."
    )
    average_ticket_price: list[Money] = strawberry.field(
        description="Per currency: those orders' amounts / their tickets, rounded half-to-even to the minor unit."
    )


@strawberry.type(description="People on the platform (or the organization filtered on): accounts and profiles by kind.")
class PeopleKpis:
    users: int = strawberry.field(description="User accounts (of the organization filtered on: its members).")
    creators: int = strawberry.field(description="Profiles of kind creator.")
    brands: int = strawberry.field(description="Profiles of kind brand.")
    providers: int = strawberry.field(description="Profiles of kind provider.")


@strawberry.type(description="Platform KPIs; windows are UTC calendar months (this month runs to now).")
class PlatformKpis:
    organization_id: strawberry.ID | None = strawberry.field(description="The organization filtered on; null: the platform.")
    as_of: datetime = strawberry.field(description="When the figures were computed.")
    organizations: OrganizationCounts = strawberry.field(description="Organizations by lifecycle.")
    this_month: PeriodKpis = strawberry.field(description="From the 1st of this month (UTC) to now.")
    last_month: PeriodKpis = strawberry.field(description="The whole previous UTC month.")
    all_time: PeriodKpis = strawberry.field(description="Everything recorded up to now.")
    gmv_change: list[RevenueChange] = strawberry.field(
        description="GMV this month (to date) against the whole of last month, per currency."
    )
    listings: ListingKpis = strawberry.field(description="Ticketed events and the tickets sold for them.")
    people: PeopleKpis = strawberry.field(description="Users, creators, brands and providers.")


@strawberry.enum(description="A growth window ending with the current UTC day (day presets) or month (12 months).")
class GrowthPreset(Enum):
    LAST_7_DAYS = strawberry.enum_value("last_7_days", description="Today and the 6 UTC days before, by day.")
    LAST_30_DAYS = strawberry.enum_value("last_30_days", description="Today and the 29 UTC days before, by day.")
    LAST_90_DAYS = strawberry.enum_value("last_90_days", description="Today and the 89 UTC days before, by day.")
    LAST_12_MONTHS = strawberry.enum_value("last_12_months", description="This UTC month and the 11 before, by month.")


@strawberry.input(description="A growth preset, or a custom from/to (to is exclusive, at most 400 days).")
class GrowthRangeInput:
    preset: GrowthPreset | None = strawberry.field(default=None, description="A window ending now.")
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Start of a custom range (inclusive, ISO 8601 with offset)."
    )
    to: datetime | None = strawberry.field(default=None, description="End of a custom range (exclusive); defaults to now.")


@strawberry.type(description="One UTC bucket of the growth series.")
class GrowthPoint:
    start: datetime = strawberry.field(description="Bucket start (clipped to the range).")
    end: datetime = strawberry.field(description="Bucket end (exclusive, clipped to the range).")
    gmv: list[Money] = strawberry.field(description="GMV of the bucket, per currency (as in PeriodKpis.gmv).")
    new_organizations: int = strawberry.field(description="Organizations created in the bucket.")
    active_profiles: int = strawberry.field(description="Profiles with at least one view in the bucket.")
    platform_revenue: list[Money] = strawberry.field(
        description="Net platform revenue of the bucket (platform + service - processor fees), per currency."
    )
    tickets_sold: int = strawberry.field(
        description="Tickets sold in the bucket for listings (of the listing status asked for, if any)."
    )
    average_ticket_price: list[Money] = strawberry.field(
        description="Per currency: those orders' amounts / their tickets, rounded half-to-even to the minor unit."
    )


@strawberry.type(description="Growth per UTC bucket, every bucket listed.")
class PlatformGrowth:
    organization_id: strawberry.ID | None = strawberry.field(description="The organization filtered on; null: the platform.")
    range: ResolvedRange = strawberry.field(description="The range covered (UTC).")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    listing_status: ListingStatus | None = strawberry.field(
        description="The listing status ticket figures are filtered on; null: every listing."
    )
    points: list[GrowthPoint] = strawberry.field(description="Every bucket of the range, in order.")


@strawberry.type(description="One suspension or reinstatement.")
class OrganizationStatusChange:
    action: str = strawberry.field(description="suspended or reinstated.")
    actor: str = strawberry.field(description="The platform admin's subject.")
    reason: str = strawberry.field(description="Why, as given.")
    at: datetime = strawberry.field(description="When.")


@strawberry.type(description="An organization's lifecycle: status, churn, last event and status history.")
class OrganizationLifecycle:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    name: str = strawberry.field(description="Its name.")
    status: OrganizationStatus = strawberry.field(description="Active or suspended.")
    churned: bool = strawberry.field(description="Not suspended and no event received in 90 days.")
    active: bool = strawberry.field(description="Neither suspended nor churned.")
    created_at: datetime = strawberry.field(description="When it was created.")
    last_event_at: datetime | None = strawberry.field(description="When its latest event was received; null: never.")
    status_changed_at: datetime | None = strawberry.field(description="When the status last changed.")
    status_changed_by: str | None = strawberry.field(description="Who changed it last.")
    status_reason: str | None = strawberry.field(description="The reason given for the last change.")
    history: list[OrganizationStatusChange] = strawberry.field(description="Every status change, oldest first.")
