"""Platform KPIs, growth and organization lifecycle (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import platform as service
from app.services.accounts import audit
from app.services.listings import ListingStatus as ListingState
from app.timebuckets import Grain, Preset, RangeSpec
from resolvers.common import guarded, to_resolved_range, viewer_of
from resolvers.revenue import money, to_changes
from schema.common import Granularity
from schema.platform import (
    GrowthPoint,
    GrowthRangeInput,
    ListingKpis,
    ListingStatus,
    OrganizationCounts,
    OrganizationLifecycle,
    OrganizationStatus,
    OrganizationStatusChange,
    PeopleKpis,
    PeriodKpis,
    PlatformGrowth,
    PlatformKpis,
)

PlatformOrganizationArg = Annotated[
    strawberry.ID | None, strawberry.argument(description="Only this organization; omit for the whole platform.")
]
TargetOrganizationArg = Annotated[strawberry.ID, strawberry.argument(description="The organization.")]
ReasonArg = Annotated[str, strawberry.argument(description="Why (1 to 500 characters); kept in the audit trail.")]


def as_id(value: object) -> strawberry.ID:
    return strawberry.ID(str(value))


def to_period(window: service.MoneyWindow) -> PeriodKpis:
    return PeriodKpis(
        from_=window.start, to=window.end, gmv=money(window.gmv), orders=window.orders, tickets=window.tickets,
        average_order_value=money(window.average_order_value), platform_fees=money(window.platform_fees),
        service_fees=money(window.service_fees), processor_fees=money(window.processor_fees),
        net_platform_revenue=money(window.net_platform_revenue),
    )  # fmt: skip


def to_listing_kpis(counts: service.ListingCounts) -> ListingKpis:
    return ListingKpis(
        total=counts.total, live_now=counts.live_now, upcoming_next_30_days=counts.upcoming, this_month=counts.this_month,
        average_per_organization=counts.average_per_organization, tickets_sold=counts.tickets.tickets,
        average_ticket_price=money(counts.tickets.average_price),
    )  # fmt: skip


async def platform_kpis(info: Info, organization_id: PlatformOrganizationArg = None) -> PlatformKpis:
    found = await service.kpis(viewer=viewer_of(info), organization_id=organization_id)
    counts = found.organizations
    return PlatformKpis(
        organization_id=as_id(found.organization_id) if found.organization_id else None, as_of=found.windows.now,
        organizations=OrganizationCounts(
            total=counts.total, active=counts.active, suspended=counts.suspended, churned=counts.churned,
            new_this_week=counts.new_this_week, new_this_month=counts.new_this_month,
            new_last_month=counts.new_last_month, month_over_month_growth_percent=counts.month_over_month_growth,
        ),
        this_month=to_period(found.this_month), last_month=to_period(found.last_month), all_time=to_period(found.all_time),
        gmv_change=to_changes(found.this_month.gmv, found.last_month.gmv), listings=to_listing_kpis(found.listings),
        people=PeopleKpis(users=found.people.users, creators=found.people.creators, brands=found.people.brands,
                          providers=found.people.providers),
    )  # fmt: skip


async def platform_growth(
    info: Info,
    range_: Annotated[GrowthRangeInput, strawberry.argument(name="range", description="A preset or a custom from/to (UTC buckets).")],
    granularity: Annotated[
        Granularity | None,
        strawberry.argument(description="Bucket size; defaults to DAY (MONTH for LAST_12_MONTHS)."),
    ] = None,
    organization_id: PlatformOrganizationArg = None,
    listing_status: Annotated[
        ListingStatus | None,
        strawberry.argument(description="Tickets of the listings in this status now only (e.g. LIVE or ENDED)."),
    ] = None,
) -> PlatformGrowth:
    found = await service.growth(
        viewer=viewer_of(info), organization_id=organization_id,
        preset=Preset(range_.preset.value) if range_.preset else None,
        custom=RangeSpec(start=range_.from_, end=range_.to), grain=Grain(granularity.value) if granularity else None,
        listing_status=ListingState(listing_status.value) if listing_status else None,
    )  # fmt: skip
    return PlatformGrowth(
        organization_id=as_id(found.organization_id) if found.organization_id else None, range=to_resolved_range(found.range),
        granularity=Granularity(found.grain.value),
        listing_status=ListingStatus(found.listing_status.value) if found.listing_status else None,
        points=[
            GrowthPoint(start=p.money.start, end=p.money.end, gmv=money(p.money.gmv), new_organizations=p.new_organizations,
                        active_profiles=p.active_profiles, platform_revenue=money(p.money.net_platform_revenue),
                        tickets_sold=p.tickets.tickets, average_ticket_price=money(p.tickets.average_price))
            for p in found.points
        ],
    )  # fmt: skip


def to_lifecycle(found: service.Lifecycle) -> OrganizationLifecycle:
    s = found.state
    return OrganizationLifecycle(
        organization_id=as_id(s.id), name=s.name, status=OrganizationStatus(s.status), churned=s.churned, active=s.active,
        created_at=s.created_at, last_event_at=s.last_event_at, status_changed_at=s.status_changed_at,
        status_changed_by=s.status_changed_by, status_reason=s.status_reason,
        history=[OrganizationStatusChange(action=h.action, actor=h.actor, reason=h.reason, at=h.at) for h in found.history],
    )  # fmt: skip


async def platform_organizations(
    info: Info,
    organization_id: PlatformOrganizationArg = None,
    limit: Annotated[int, strawberry.argument(description="At most this many organizations (1 to 500), by name.")] = 50,
) -> list[OrganizationLifecycle]:
    found = await service.organizations_lifecycle(viewer=viewer_of(info), organization_id=organization_id, limit=limit)
    return [to_lifecycle(x) for x in found]


async def suspend_organization(info: Info, organization_id: TargetOrganizationArg, reason: ReasonArg) -> OrganizationLifecycle:
    found = await service.set_status(viewer=viewer_of(info), organization_id=organization_id, suspend=True, reason=reason)
    return to_lifecycle(found)


async def reinstate_organization(info: Info, organization_id: TargetOrganizationArg, reason: ReasonArg) -> OrganizationLifecycle:
    found = await service.set_status(viewer=viewer_of(info), organization_id=organization_id, suspend=False, reason=reason)
    return to_lifecycle(found)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The platform domain's reads, merged into the root by schema.root."""

    platform_kpis: PlatformKpis = guarded(
        Access.PLATFORM_ADMINS, platform_kpis,
        "Organizations by lifecycle, GMV, orders, tickets, average order value and fees this month, last month "
        "and all time, in UTC; ticketed events (listings) and the tickets sold for them.",
    )
    platform_growth: PlatformGrowth = guarded(
        Access.PLATFORM_ADMINS, platform_growth,
        "GMV, new organizations, active profiles, platform revenue and tickets sold (optionally for listings in one "
        "status) per UTC bucket.",
    )
    platform_organizations: list[OrganizationLifecycle] = guarded(
        Access.PLATFORM_ADMINS, platform_organizations,
        "Organizations with status, churn, last event received and status history, by name.",
    )


@strawberry.type
class Mutation:
    """The platform domain's writes, merged into the root by schema.root."""

    suspend_organization: OrganizationLifecycle = guarded(
        Access.PLATFORM_ADMINS, suspend_organization,
        "Suspend an organization, with a reason (audited with who and when).", audited=audit.ORGANIZATION_SUSPENDED,
    )
    reinstate_organization: OrganizationLifecycle = guarded(
        Access.PLATFORM_ADMINS, reinstate_organization,
        "Reinstate a suspended organization, with a reason (audited with who and when).", audited=audit.ORGANIZATION_REINSTATED,
    )
