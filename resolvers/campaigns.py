"""Campaign performance (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import campaigns as service
from resolvers.common import RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.insight_inputs import to_grain
from resolvers.revenue import money
from schema.campaigns import CampaignPerformance, CampaignPeriod, CampaignRoi, CampaignTotals, UtmPerformance
from schema.common import Granularity

OrganizationArg = Annotated[strawberry.ID, strawberry.argument(description="The organization.")]
GranularityArg = Annotated[Granularity | None, strawberry.argument(description="Period size (default DAY).")]


def to_row(row: service.UtmRow) -> UtmPerformance:
    source, medium, campaign = row.utm
    return UtmPerformance(
        source=source, medium=medium, campaign=campaign, visits=row.visits, unique_visitors=row.unique_visitors,
        conversions=row.conversions, revenue=money(row.revenue),
        periods=[CampaignPeriod(start=p.start, visits=p.visits, conversions=p.conversions) for p in row.periods],
    )  # fmt: skip


def to_totals(total: service.CampaignTotals) -> CampaignTotals:
    return CampaignTotals(
        campaign=total.campaign, visits=total.visits, conversions=total.conversions, revenue=money(total.revenue),
        cost=money(total.cost), roi_percent=[CampaignRoi(currency=c, percent=p) for c, p in sorted(total.roi.items())],
    )  # fmt: skip


async def campaign_performance(
    info: Info, organization_id: OrganizationArg, range_: RangeArg, granularity: GranularityArg = None
) -> CampaignPerformance:
    found = await service.campaign_performance(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(range_),
        grain=to_grain(granularity),
    )  # fmt: skip
    return CampaignPerformance(
        range=to_resolved_range(found.range), granularity=Granularity(found.grain.value),
        rows=[to_row(r) for r in found.rows], campaigns=[to_totals(t) for t in found.campaigns],
    )  # fmt: skip


@strawberry.type
class Query:
    """The campaigns domain's reads, merged into the root by schema.root."""

    campaign_performance: CampaignPerformance = guarded(
        Access.ORG_READERS, campaign_performance,
        "Visits, unique visitors, conversions and revenue per UTM source / medium / campaign, and per campaign its "
        "tagged cost and ROI.",
    )
