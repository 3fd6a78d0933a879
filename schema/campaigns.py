"""Campaign performance by UTM source, medium and campaign."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.common import Granularity, Money, ResolvedRange


@strawberry.type(description="Visits and conversions of one UTM row in one period (local to the organization).")
class CampaignPeriod:
    start: datetime = strawberry.field(description="Period start.")
    visits: int = strawberry.field(description="Sessions whose first event lies in the period.")
    conversions: int = strawberry.field(description="Money events and order.paid events of those sessions.")


@strawberry.type(
    description="One UTM source / medium / campaign: the UTM of a session's first event (null: none sent)."
)
class UtmPerformance:
    source: str | None = strawberry.field(description="utm_source; null when the visit had none.")
    medium: str | None = strawberry.field(description="utm_medium; null when the visit had none.")
    campaign: str | None = strawberry.field(description="utm_campaign; null when the visit had none.")
    visits: int = strawberry.field(description="Sessions starting in the range with this UTM.")
    unique_visitors: int = strawberry.field(description="Distinct visitor ids among those sessions.")
    conversions: int = strawberry.field(
        description="gift.purchased, booking.completed, subscription.charged and order.paid events of those sessions."
    )
    revenue: list[Money] = strawberry.field(description="Those conversions' amounts per currency (before refunds).")
    periods: list[CampaignPeriod] = strawberry.field(description="Every period of the range, in order.")


@strawberry.type(description="Return on investment in one currency.")
class CampaignRoi:
    currency: str = strawberry.field(description="ISO 4217 code.")
    percent: float = strawberry.field(description="(revenue - cost) / cost in percent.")


@strawberry.type(description="One campaign over every source and medium, with its tagged cost and ROI.")
class CampaignTotals:
    campaign: str = strawberry.field(description="The utm_campaign value (and the costs' campaign tag).")
    visits: int = strawberry.field(description="Sessions of the campaign starting in the range.")
    conversions: int = strawberry.field(description="Conversions of those sessions.")
    revenue: list[Money] = strawberry.field(description="Their amounts per currency.")
    cost: list[Money] = strawberry.field(description="Costs tagged with the campaign counted in the range, per currency.")
    roi_percent: list[CampaignRoi] = strawberry.field(
        description="Per currency with a cost: (revenue - cost) / cost in percent (2 decimals)."
    )


@strawberry.type(description="Campaign performance over a range, per UTM row and per campaign.")
class CampaignPerformance:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Period size.")
    rows: list[UtmPerformance] = strawberry.field(description="Every UTM row with a visit, untagged traffic last.")
    campaigns: list[CampaignTotals] = strawberry.field(
        description="Every campaign with a visit or a tagged cost in the range, by name."
    )
