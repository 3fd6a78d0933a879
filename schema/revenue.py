"""Revenue: the ledger's figures by source, gifts, duo referrals, money settings and live counters."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Granularity, Money, ResolvedRange


@strawberry.enum(description="Where revenue comes from: the ledger entry's type.")
class RevenueSource(Enum):
    BOOKING = strawberry.enum_value("booking", description="booking.completed.")
    GIFT = strawberry.enum_value("gift", description="gift.purchased.")
    SUBSCRIPTION = strawberry.enum_value("subscription", description="subscription.charged.")
    AFFILIATE = strawberry.enum_value("affiliate", description="affiliate.commission.")
    ORDER = strawberry.enum_value("order", description="order.paid.")


@strawberry.type(description="A total converted into the organization's reporting currency.")
class ConvertedTotal:
    total: Money | None = strawberry.field(
        description="Sum of the per-currency totals, each converted once with the configured rate and rounded half-to-even "
        "to the reporting currency's minor unit; null when a currency lacks a rate."
    )
    missing_rates: list[str] = strawberry.field(description="Currencies involved that have no exchange rate (never added silently).")


@strawberry.type(description="Revenue of one source.")
class SourceRevenue:
    source: RevenueSource = strawberry.field(description="The source.")
    revenue: list[Money] = strawberry.field(description="Revenue per currency (sales minus refunds in the period).")
    previous_revenue: list[Money] = strawberry.field(description="The same for the previous equal period.")


@strawberry.type(description="Change of one currency's revenue against the previous equal period.")
class RevenueChange:
    currency: str = strawberry.field(description="ISO 4217 code.")
    amount_minor: int = strawberry.field(description="Current minus previous, in minor units.")
    percent: float | None = strawberry.field(description="Change in percent of the previous revenue (2 decimals); null when it was 0.")


@strawberry.type(
    description="Revenue over a range by source, against the equally long period just before it. Revenue counts "
    "completed and refunded sales and subtracts refunds in the period the refund happened; pending entries and failed "
    "payments are never revenue."
)
class RevenueSummary:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    previous_range: ResolvedRange = strawberry.field(description="The previous equal period compared against.")
    total: list[Money] = strawberry.field(description="Revenue per currency (never added across currencies).")
    previous_total: list[Money] = strawberry.field(description="Revenue per currency in the previous period.")
    change: list[RevenueChange] = strawberry.field(description="Change per currency.")
    transactions: int = strawberry.field(description="Ledger entries counted (sales and refunds).")
    by_source: list[SourceRevenue] = strawberry.field(description="Revenue per source (sources with revenue in either period).")
    converted: ConvertedTotal | None = strawberry.field(
        description="Total in the reporting currency; null when the organization has none."
    )


@strawberry.type(description="Revenue of one bucket.")
class RevenuePoint:
    start: datetime = strawberry.field(description="Bucket start (UTC instant of the local bucket start, clipped to the range).")
    end: datetime = strawberry.field(description="Bucket end (exclusive, clipped to the range).")
    total: list[Money] = strawberry.field(description="Revenue per currency.")
    by_source: list[SourceRevenue] = strawberry.field(description="Revenue per source (previousRevenue is empty here).")
    transactions: int = strawberry.field(description="Ledger entries counted (sales and refunds).")


@strawberry.type(description="A zero-filled revenue series bucketed in the organization's time zone.")
class RevenueTimeseries:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    points: list[RevenuePoint] = strawberry.field(description="Every bucket of the range, in order.")


@strawberry.type(description="Gifts over a range.")
class GiftSummary:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    revenue: list[Money] = strawberry.field(description="Gift revenue per currency (refunds subtracted).")
    gifts: int = strawberry.field(description="Gifts bought (refunded ones included).")
    donors: int = strawberry.field(description="Distinct donors (userId, else the visitor).")


@strawberry.type(description="Donors sharing one country or one device type (of their first gift of the range).")
class DonorGroup:
    value: str | None = strawberry.field(description="The country (ISO code) or device type; null when unknown.")
    donors: int = strawberry.field(description="Donors in the group.")
    new_donors: int = strawberry.field(description="Of them, donors with no gift in the scope before the range.")
    gifts: int = strawberry.field(description="Gifts they bought in the range (refunded ones included).")


@strawberry.type(description="Where a range's donors come from, and how many are new.")
class GiftDonors:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    donors: int = strawberry.field(description="Distinct donors who bought a gift in the range.")
    new_donors: int = strawberry.field(description="Donors whose first gift in the scope (profile or organization) is in the range.")
    returning_donors: int = strawberry.field(description="Donors who had bought a gift in the scope before the range.")
    by_country: list[DonorGroup] = strawberry.field(description="Donors per country, most donors first.")
    by_device: list[DonorGroup] = strawberry.field(description="Donors per device type, most donors first.")


@strawberry.type(description="Gift revenue of one category (properties.category; 'other' without one).")
class GiftCategory:
    category: str = strawberry.field(description="The category.")
    revenue: list[Money] = strawberry.field(description="Revenue per currency over the range.")
    gifts: int = strawberry.field(description="Gifts bought over the range.")
    previous_revenue: list[Money] = strawberry.field(description="Trend: its revenue in the previous equal period.")
    previous_gifts: int = strawberry.field(description="Trend: gifts bought in the previous equal period.")


@strawberry.type(description="One gift purchase.")
class GiftPurchase:
    event_id: str = strawberry.field(description="The gift.purchased event.")
    profile_id: strawberry.ID = strawberry.field(description="The profile the gift was for.")
    donor_id: str | None = strawberry.field(description="The donor: u:<userId>, a:<anonymousId> or the cookie-less visitor hash.")
    amount: Money = strawberry.field(description="What was paid.")
    category: str = strawberry.field(description="The gift's category.")
    refunded: bool = strawberry.field(description="Whether it was refunded since.")
    occurred_at: datetime = strawberry.field(description="When.")


@strawberry.type(description="A donor ranked by gifts bought in the range.")
class GiftDonor:
    donor_id: str = strawberry.field(description="The donor: u:<userId>, a:<anonymousId> or the cookie-less visitor hash.")
    gifts: int = strawberry.field(description="Gifts bought in the range.")
    revenue: list[Money] = strawberry.field(description="What they paid per currency, refunds subtracted.")
    purchases: list[GiftPurchase] = strawberry.field(description="Their purchases in the range, newest first (up to 50).")


@strawberry.type(description="Duo bookings with one partner.")
class DuoPartner:
    partner_profile_id: strawberry.ID = strawberry.field(description="The partner profile.")
    partner_name: str | None = strawberry.field(description="Its name.")
    bookings: int = strawberry.field(description="Duo bookings together (refunds not counted).")
    revenue: list[Money] = strawberry.field(description="Their revenue per currency, refunds subtracted.")
    own_share: list[Money] = strawberry.field(description="This profile's share under each booking's split.")
    partner_share: list[Money] = strawberry.field(description="The partner's share.")


@strawberry.type(
    description="A profile's duo bookings (booking.completed with properties.partnerProfileId), either side. Split: the booked "
    "profile gets amount x splitPercent / 100 truncated toward zero, the partner the rest."
)
class DuoStats:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    bookings: int = strawberry.field(description="Duo bookings.")
    revenue: list[Money] = strawberry.field(description="Their revenue per currency.")
    own_share: list[Money] = strawberry.field(description="This profile's share per currency.")
    partner_share: list[Money] = strawberry.field(description="The partners' share per currency.")
    partners: list[DuoPartner] = strawberry.field(description="Partners ranked by bookings, then id.")


@strawberry.type(description="An exchange rate into the reporting currency.")
class ExchangeRate:
    currency: str = strawberry.field(description="The currency converted.")
    rate: str = strawberry.field(description="Units of the reporting currency per unit of this currency (decimal text).")
    updated_by: str = strawberry.field(description="Who set it.")
    updated_at: datetime = strawberry.field(description="When.")


@strawberry.type(description="How an organization's money is reported.")
class MoneySettings:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    reporting_currency: str | None = strawberry.field(description="Currency converted totals are given in; null: none.")
    duo_split_percent: int = strawberry.field(description="Booked profile's share of a duo booking without properties.splitPercent.")
    rates: list[ExchangeRate] = strawberry.field(description="Configured rates.")


@strawberry.input(description="An exchange rate to set.")
class ExchangeRateInput:
    currency: str = strawberry.field(description="ISO 4217 code of the currency converted.")
    rate: str = strawberry.field(description="Units of the reporting currency per unit, as decimal text, e.g. \"0.0067\".")


@strawberry.type(description="Today's running revenue, pushed after each batch that records money.")
class RevenueCounters:
    organization_id: strawberry.ID | None = strawberry.field(description="The organization; null: the whole platform.")
    since: datetime = strawberry.field(description="Start of today (organization's time zone; UTC for the platform).")
    revenue: list[Money] = strawberry.field(description="Revenue since then per currency (refunds subtracted).")
    transactions: int = strawberry.field(description="Ledger entries counted as revenue since then (sales and refunds).")
    failed_payments: int = strawberry.field(description="Failed payments recorded since then.")
    updated_at: datetime = strawberry.field(description="When it was computed.")


@strawberry.type(description="A gift as the worker records it.")
class GiftPurchased:
    event_id: str = strawberry.field(description="The gift.purchased event.")
    profile_id: strawberry.ID = strawberry.field(description="The profile.")
    donor_id: str | None = strawberry.field(description="The donor.")
    amount: Money = strawberry.field(description="What was paid.")
    category: str = strawberry.field(description="The gift's category.")
    occurred_at: datetime = strawberry.field(description="When.")
