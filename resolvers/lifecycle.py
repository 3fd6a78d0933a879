"""The lifecycle and stickiness insights (thin: convert, call, map)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.query_cost import series_length, size_lists_by_query_input
from app.services.insights import lifecycle as service
from resolvers.common import guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.insight_inputs import to_grain, to_matcher
from schema.common import Granularity
from schema.lifecycle import (
    LifecyclePeriod,
    LifecycleQueryInput,
    LifecycleResult,
    StickinessCount,
    StickinessQueryInput,
    StickinessResult,
)


def _periods(query: Mapping[str, Any]) -> int:
    return series_length(query.get("range"), query.get("granularity") or "DAY")


size_lists_by_query_input({("LifecycleResult", "periods"): _periods, ("StickinessResult", "counts"): _periods})


async def lifecycle(
    info: Info, query: Annotated[LifecycleQueryInput, strawberry.argument(description="What to count.")]
) -> LifecycleResult:
    found = await service.lifecycle(
        viewer=viewer_of(info), organization_id=query.organization_id, time_range=to_range_spec(query.range_),
        event=to_matcher(query.event, "query.event"), granularity=to_grain(query.granularity),
    )  # fmt: skip
    return LifecycleResult(
        range=to_resolved_range(found.range), granularity=Granularity(found.granularity.value), as_of=found.as_of,
        periods=[
            LifecyclePeriod(start=p.start, new=p.new, returning=p.returning, resurrecting=p.resurrecting, dormant=p.dormant)
            for p in found.periods
        ],
    )  # fmt: skip


async def stickiness(
    info: Info, query: Annotated[StickinessQueryInput, strawberry.argument(description="What to count.")]
) -> StickinessResult:
    found = await service.stickiness(
        viewer=viewer_of(info), organization_id=query.organization_id, time_range=to_range_spec(query.range_),
        event=to_matcher(query.event, "query.event"), granularity=to_grain(query.granularity),
    )  # fmt: skip
    return StickinessResult(
        range=to_resolved_range(found.range), granularity=Granularity(found.granularity.value), periods=found.periods,
        persons=found.persons, counts=[StickinessCount(active_periods=n, persons=p) for n, p in found.counts],
    )  # fmt: skip


@strawberry.type
class Query:
    """The lifecycle and stickiness insights, merged into the root by schema.root."""

    lifecycle: LifecycleResult = guarded(
        Access.ORG_READERS, lifecycle,
        "Lifecycle: per period, the persons doing an event who are new, returning or resurrecting, and those gone "
        "dormant (negative).",
    )
    stickiness: StickinessResult = guarded(
        Access.ORG_READERS, stickiness,
        "Stickiness: persons by the number of the range's periods in which they did an event.",
    )
