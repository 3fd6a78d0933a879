"""Revenue, gifts, duo referrals, money settings and live money (thin: convert, call, map)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.live_messages import GiftPurchasedMessage, RevenueCountersMessage
from app.services import revenue as service
from app.services.accounts import audit
from app.services.revenue import gift_insights
from app.timebuckets import Grain
from resolvers.common import (
    RangeArg,
    follow_channel,
    follow_profile,
    from_bus,
    guarded,
    to_range_spec,
    to_resolved_range,
    viewer_of,
)
from resolvers.funnels import to_funnel
from schema.common import Granularity, Money
from schema.funnels import Funnel
from schema.revenue import (
    ConvertedTotal,
    DonorGroup,
    DuoPartner,
    DuoStats,
    ExchangeRate,
    ExchangeRateInput,
    GiftCategory,
    GiftDonor,
    GiftDonors,
    GiftPurchase,
    GiftPurchased,
    GiftSummary,
    MoneySettings,
    RevenueChange,
    RevenueCounters,
    RevenuePoint,
    RevenueSource,
    RevenueSummary,
    RevenueTimeseries,
    SourceRevenue,
)

ProfileArg = Annotated[
    strawberry.ID | None, strawberry.argument(description="One profile (providers: their own); give this or organizationId.")
]
OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="A whole organization (its admins; platform admins name it); give this or profileId."),
]
AdminOrganizationArg = Annotated[
    strawberry.ID | None, strawberry.argument(description="The organization; org admins may omit it (theirs).")
]
GranularityArg = Annotated[Granularity, strawberry.argument(description="Bucket size.")]


def money(totals: Mapping[str, int]) -> list[Money]:
    return [Money(amount_minor=amount, currency=currency) for currency, amount in sorted(totals.items())]


def _sources(current: dict[tuple[str, str], int], previous: dict[tuple[str, str], int]) -> list[SourceRevenue]:
    sources = sorted({s for s, _ in current} | {s for s, _ in previous})
    return [
        SourceRevenue(
            source=RevenueSource(s),
            revenue=money({c: a for (k, c), a in current.items() if k == s}),
            previous_revenue=money({c: a for (k, c), a in previous.items() if k == s}),
        )
        for s in sources
    ]


def to_changes(current: Mapping[str, int], previous: Mapping[str, int]) -> list[RevenueChange]:
    return [
        RevenueChange(currency=c.currency, amount_minor=c.amount_minor, percent=c.percent)
        for c in service.changes(current, previous)
    ]


def _converted(scope: service.Scope, totals: dict[str, int]) -> ConvertedTotal | None:
    if scope.reporting_currency is None:
        return None
    total, missing = service.convert(totals, scope)
    amount = Money(amount_minor=total, currency=scope.reporting_currency) if total is not None else None
    return ConvertedTotal(total=amount, missing_rates=missing)


async def revenue_summary(
    info: Info, range_: RangeArg, profile_id: ProfileArg = None, organization_id: OrganizationArg = None
) -> RevenueSummary:
    found = await service.revenue_summary(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id, time_range=to_range_spec(range_)
    )
    now, before = found.current.totals, found.before.totals
    return RevenueSummary(
        range=to_resolved_range(found.range), previous_range=to_resolved_range(found.previous), total=money(now), previous_total=money(before),
        change=to_changes(now, before), transactions=found.current.transactions,
        by_source=_sources(found.current.by_source, found.before.by_source), converted=_converted(found.scope, now),
    )  # fmt: skip


async def revenue_timeseries(
    info: Info,
    range_: RangeArg,
    granularity: GranularityArg,
    profile_id: ProfileArg = None,
    organization_id: OrganizationArg = None,
) -> RevenueTimeseries:
    found = await service.revenue_timeseries(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id,
        time_range=to_range_spec(range_), grain=Grain(granularity.value),
    )  # fmt: skip
    points = [
        RevenuePoint(start=b.start, end=b.end, total=money(b.totals), by_source=_sources(b.by_source, {}), transactions=b.transactions)
        for b in found.buckets
    ]
    return RevenueTimeseries(range=to_resolved_range(found.range), granularity=granularity, points=points)


# --------------------------------------------------------------------------- gifts


async def gift_summary(
    info: Info, range_: RangeArg, profile_id: ProfileArg = None, organization_id: OrganizationArg = None
) -> GiftSummary:
    found = await service.gift_summary(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id, time_range=to_range_spec(range_)
    )
    return GiftSummary(range=to_resolved_range(found.range), revenue=money(found.revenue), gifts=found.gifts, donors=found.donors)


async def gift_categories(
    info: Info,
    range_: RangeArg,
    profile_id: ProfileArg = None,
    organization_id: OrganizationArg = None,
    limit: Annotated[int, strawberry.argument(description="How many categories, most gifts first (1..100).")] = 20,
) -> list[GiftCategory]:
    found = await service.gift_categories(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id,
        time_range=to_range_spec(range_), limit=limit,
    )  # fmt: skip
    return [
        GiftCategory(
            category=c.category, revenue=money(c.current.revenue), gifts=c.current.gifts,
            previous_revenue=money(c.previous.revenue), previous_gifts=c.previous.gifts,
        )  # fmt: skip
        for c in found
    ]


def _donor_groups(groups: list[gift_insights.DonorGroup]) -> list[DonorGroup]:
    return [DonorGroup(value=g.value, donors=g.donors, new_donors=g.new_donors, gifts=g.gifts) for g in groups]


async def gift_donors(
    info: Info, range_: RangeArg, profile_id: ProfileArg = None, organization_id: OrganizationArg = None
) -> GiftDonors:
    found = await gift_insights.gift_donors(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id, time_range=to_range_spec(range_)
    )
    return GiftDonors(
        range=to_resolved_range(found.range), donors=found.donors, new_donors=found.new_donors,
        returning_donors=found.returning_donors, by_country=_donor_groups(found.by_country),
        by_device=_donor_groups(found.by_device),
    )  # fmt: skip


async def gift_funnel(
    info: Info,
    range_: RangeArg,
    profile_id: ProfileArg = None,
    organization_id: OrganizationArg = None,
    conversion_window_seconds: Annotated[
        int | None,
        strawberry.argument(description="Seconds from the view within which the gift counts (default 7 days, at most 365)."),
    ] = None,
) -> Funnel:
    found = await gift_insights.gift_funnel(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id,
        time_range=to_range_spec(range_), window_seconds=conversion_window_seconds,
    )  # fmt: skip
    return to_funnel(found)


def _purchase(row: Mapping[str, Any]) -> GiftPurchase:
    return GiftPurchase(
        event_id=row["event_id"], profile_id=strawberry.ID(str(row["profile_id"])), donor_id=row["customer_id"],
        amount=Money(amount_minor=row["amount_minor"], currency=row["currency"]), category=row["category"],
        refunded=row["status"] == "refunded", occurred_at=row["occurred_at"],
    )  # fmt: skip


async def top_gift_donors(
    info: Info,
    range_: RangeArg,
    profile_id: ProfileArg = None,
    organization_id: OrganizationArg = None,
    limit: Annotated[int, strawberry.argument(description="How many donors (1..100).")] = 10,
) -> list[GiftDonor]:
    found = await service.top_gift_donors(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id,
        time_range=to_range_spec(range_), limit=limit,
    )  # fmt: skip
    return [
        GiftDonor(donor_id=d.donor_id, gifts=len(d.purchases), revenue=money(d.revenue),
                  purchases=[_purchase(p) for p in d.purchases[: service.DONOR_PURCHASES_MAX]])  # fmt: skip
        for d in found
    ]


# --------------------------------------------------------------------------- duo


async def duo_stats(
    info: Info, range_: RangeArg, profile_id: Annotated[strawberry.ID, strawberry.argument(description="The profile.")]
) -> DuoStats:
    found = await service.duo_stats(viewer=viewer_of(info), profile_id=profile_id, time_range=to_range_spec(range_))
    return DuoStats(
        range=to_resolved_range(found.range), bookings=found.bookings, revenue=money(found.revenue),
        own_share=money(found.own_share), partner_share=money(found.partner_share),
        partners=[
            DuoPartner(
                partner_profile_id=strawberry.ID(str(p.partner_profile_id)), partner_name=p.partner_name,
                bookings=p.bookings, revenue=money(p.revenue), own_share=money(p.own_share),
                partner_share=money(p.partner_share),
            )
            for p in found.partners
        ],
    )  # fmt: skip


# --------------------------------------------------------------------------- settings


def _settings(found: service.MoneySettings) -> MoneySettings:
    return MoneySettings(
        organization_id=strawberry.ID(str(found.organization_id)), reporting_currency=found.reporting_currency,
        duo_split_percent=found.duo_split_percent,
        rates=[ExchangeRate(currency=r.currency, rate=str(r.rate.normalize()), updated_by=r.updated_by,
                            updated_at=r.updated_at) for r in found.rates],
    )  # fmt: skip


async def money_settings(info: Info, organization_id: AdminOrganizationArg = None) -> MoneySettings:
    return _settings(await service.money_settings(viewer=viewer_of(info), organization_id=organization_id))


async def update_money_settings(
    info: Info,
    organization_id: AdminOrganizationArg = None,
    reporting_currency: Annotated[
        str | None, strawberry.argument(description="New reporting currency (ISO 4217); omit to keep.")
    ] = None,
    clear_reporting_currency: Annotated[
        bool, strawberry.argument(description="true removes the reporting currency (no converted totals).")
    ] = False,
    duo_split_percent: Annotated[
        int | None, strawberry.argument(description="Booked profile's default share of a duo booking (1..99); omit to keep.")
    ] = None,
    rates: Annotated[
        list[ExchangeRateInput] | None, strawberry.argument(description="Replaces every rate; omit to keep them.")
    ] = None,
) -> MoneySettings:
    found = await service.update_money_settings(
        viewer=viewer_of(info), organization_id=organization_id, reporting_currency=reporting_currency,
        clear_reporting_currency=clear_reporting_currency, duo_split_percent=duo_split_percent,
        rates=[(r.currency, r.rate) for r in rates] if rates is not None else None,
    )  # fmt: skip
    return _settings(found)


# --------------------------------------------------------------------------- live


def revenue_counters_of(counters: RevenueCountersMessage) -> RevenueCounters:
    """The one RevenueCounters mapper: the first answer of the subscription and every push."""
    return RevenueCounters(
        organization_id=strawberry.ID(str(counters.organization_id)) if counters.organization_id else None,
        since=counters.start, revenue=money({c: a for a, c in counters.revenue}), transactions=counters.transactions,
        failed_payments=counters.failed_payments, updated_at=counters.updated_at,
    )  # fmt: skip


def gift_purchased_of(gift: GiftPurchasedMessage) -> GiftPurchased:
    """The one GiftPurchased mapper."""
    return GiftPurchased(
        event_id=gift.event_id, profile_id=strawberry.ID(str(gift.profile_id)), donor_id=gift.donor_id,
        amount=Money(amount_minor=gift.amount_minor, currency=gift.currency), category=gift.category,
        occurred_at=gift.occurred_at,
    )  # fmt: skip


async def gift_purchased(
    info: Info, profile_id: Annotated[strawberry.ID, strawberry.argument(description="The profile to follow.")]
) -> AsyncGenerator[GiftPurchased, None]:
    convert = from_bus(GiftPurchasedMessage, gift_purchased_of)
    async for gift in follow_profile(info, profile_id, GiftPurchasedMessage.channel_of, convert):
        yield gift


async def revenue_counters(
    info: Info,
    organization_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(description="Follow this organization; platform admins follow the whole platform without it."),
    ] = None,
) -> AsyncGenerator[RevenueCounters, None]:
    org, timezone = await service.counters_scope(viewer=viewer_of(info), organization_id=organization_id)
    yield revenue_counters_of(await service.current_counters(organization_id=org, timezone=timezone))
    channel = RevenueCountersMessage.channel_of(str(org) if org is not None else None)
    async for counters in follow_channel(info, channel, from_bus(RevenueCountersMessage, revenue_counters_of)):
        yield counters


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The revenue domain's reads, merged into the root by schema.root."""

    revenue_summary: RevenueSummary = guarded(
        Access.READERS, revenue_summary,
        "Revenue of a profile or an organization by source, with the change against the previous equal period.",
    )
    revenue_timeseries: RevenueTimeseries = guarded(
        Access.READERS, revenue_timeseries,
        "Revenue per bucket with its source breakdown, in the organization's time zone.",
    )
    gift_summary: GiftSummary = guarded(
        Access.READERS, gift_summary,
        "Gift revenue, gifts bought and distinct donors over a range.",
    )
    gift_categories: list[GiftCategory] = guarded(
        Access.READERS, gift_categories,
        "Gift revenue by category (most gifts first), with the previous equal period as its trend.",
    )
    gift_donors: GiftDonors = guarded(
        Access.READERS, gift_donors,
        "Where a range's gift donors come from (country, device) and how many are new or returning.",
    )
    gift_funnel: Funnel = guarded(
        Access.READERS, gift_funnel,
        "Profile views that led to a gift purchase within a window: the insights funnel view -> gift (of the profile,"
        " or of any profile of the organization).",
    )
    top_gift_donors: list[GiftDonor] = guarded(
        Access.READERS, top_gift_donors,
        "Donors ranked by gifts bought in the range (then by id), with their purchases.",
    )
    duo_stats: DuoStats = guarded(
        Access.READERS, duo_stats,
        "A profile's duo bookings, revenue and each side's share, with its partners ranked.",
    )
    money_settings: MoneySettings = guarded(
        Access.ORG_ADMINS, money_settings,
        "Reporting currency, exchange rates and default duo split of an organization.",
    )


@strawberry.type
class Mutation:
    """The revenue domain's writes, merged into the root by schema.root."""

    update_money_settings: MoneySettings = guarded(
        Access.ORG_ADMINS, update_money_settings,
        "Set the reporting currency, its exchange rates and the default duo split.", audited=audit.MONEY_SETTINGS_UPDATED,
    )


@strawberry.type
class Subscription:
    """The revenue domain's live updates, merged into the root by schema.root."""

    gift_purchased: GiftPurchased = guarded(
        Access.READERS, gift_purchased,
        "Each gift bought for a profile, as the worker records it.", subscription=True,
    )
    revenue_counters: RevenueCounters = guarded(
        Access.ORG_READERS, revenue_counters,
        "Today's running revenue and transaction count: now, then after each batch that records money "
        "(organization admins: theirs; platform admins: one organization or the platform).", subscription=True,
    )
