"""The funnel insight (thin: read the input into a FunnelSpec, run, map)."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.errors import BadInput
from app.services.insights import funnels as service
from app.services.insights import grammar
from app.timebuckets import Grain
from resolvers.common import guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.insight_inputs import to_breakdown, to_filters, to_matcher, to_property_key
from schema.common import Granularity
from schema.funnels import (
    Funnel,
    FunnelBreakdown,
    FunnelConversionOverTime,
    FunnelPersons,
    FunnelQueryInput,
    FunnelStep,
    FunnelTimeToConvert,
)

QueryArg = Annotated[FunnelQueryInput, strawberry.argument(description="The funnel.")]


def to_spec(query: FunnelQueryInput, field: str = "query") -> service.FunnelSpec:
    steps = query.steps or []
    if not service.MIN_STEPS <= len(steps) <= service.MAX_STEPS:
        raise BadInput(
            f"a funnel has {service.MIN_STEPS} to {service.MAX_STEPS} steps, not {len(steps)}", field=f"{field}.steps"
        )
    exclusions = query.exclusions or []
    if len(exclusions) > service.MAX_EXCLUSIONS:
        raise BadInput(f"at most {service.MAX_EXCLUSIONS} exclusions", field=f"{field}.exclusions")
    holds = query.hold_constant or []
    if len(holds) > service.MAX_HOLD_CONSTANT:
        raise BadInput(f"at most {service.MAX_HOLD_CONSTANT} properties held constant", field=f"{field}.holdConstant")
    return service.funnel_spec(
        steps=[to_matcher(s, f"{field}.steps[{i}]") for i, s in enumerate(steps)],
        order=service.FunnelOrder(query.order.value) if query.order is not None else None,
        window_seconds=query.conversion_window_seconds,
        exclusions=[
            service.Exclusion(
                grammar.event_matcher(
                    event=x.event, filters=to_filters(x.filters, f"{field}.exclusions[{i}].filters"),
                    field=f"{field}.exclusions[{i}]",
                ),
                x.from_step,
                x.to_step,
            )
            for i, x in enumerate(exclusions)
        ],
        breakdown=to_breakdown(query.breakdown, f"{field}.breakdown"),
        hold_constant=[to_property_key(h, f"{field}.holdConstant[{i}]") for i, h in enumerate(holds)],
        field=field,
    )


def to_step(step: service.StepResult) -> FunnelStep:
    return FunnelStep(
        index=step.index, event=step.event, count=step.count, conversion_rate=step.conversion_rate,
        conversion_rate_from_previous=step.conversion_rate_from_previous, drop_off=step.drop_off,
        average_seconds_to_convert=step.average_seconds_to_convert,
        median_seconds_to_convert=step.median_seconds_to_convert,
    )  # fmt: skip


async def _common(info: Info, query: FunnelQueryInput) -> dict[str, Any]:
    """The service's arguments; access is checked before the input (a refused caller learns
    nothing from validation)."""
    viewer = viewer_of(info)
    await service.check_access(viewer, query.organization_id)
    spec = to_spec(query)
    return {"viewer": viewer, "organization_id": query.organization_id, "time_range": to_range_spec(query.range), "spec": spec}


async def funnel(info: Info, query: QueryArg) -> Funnel:
    return to_funnel(await service.funnel(**await _common(info, query)))


def to_funnel(found: service.FunnelResult) -> Funnel:
    return Funnel(
        range=to_resolved_range(found.range),
        steps=[to_step(s) for s in found.steps],
        breakdowns=[
            FunnelBreakdown(value=b.value, is_other=b.is_other, steps=[to_step(s) for s in b.steps]) for b in found.breakdowns
        ],
    )


async def funnel_conversion_over_time(
    info: Info,
    query: QueryArg,
    granularity: Annotated[
        Granularity, strawberry.argument(description="The periods of entry (default DAY), in the organization's zone.")
    ] = Granularity.DAY,
) -> FunnelConversionOverTime:
    found = await service.conversion_over_time(**await _common(info, query), grain=Grain(granularity.value))
    return FunnelConversionOverTime(
        range=to_resolved_range(found.range), granularity=Granularity(found.grain.value), starts=found.starts,
        entered=found.entered, converted=found.converted, conversion_rates=found.conversion_rates,
    )  # fmt: skip


async def funnel_time_to_convert(
    info: Info,
    query: QueryArg,
    from_step: Annotated[int | None, strawberry.argument(description="From this step (default 0).")] = None,
    to_step: Annotated[int | None, strawberry.argument(description="To this step (default the last).")] = None,
    bins: Annotated[int | None, strawberry.argument(description="How many equal-width bins (1..100, default 10).")] = None,
) -> FunnelTimeToConvert:
    found = await service.time_to_convert(**await _common(info, query), from_step=from_step, to_step=to_step, bins=bins)
    return FunnelTimeToConvert(
        from_step=found.from_step, to_step=found.to_step, bin_starts_seconds=found.bin_starts,
        bin_width_seconds=found.bin_width, counts=found.counts, total=found.total,
        average_seconds=found.average_seconds, median_seconds=found.median_seconds,
    )  # fmt: skip


async def funnel_persons(
    info: Info,
    query: QueryArg,
    step: Annotated[int, strawberry.argument(description="The step (0-based).")],
    dropped: Annotated[
        bool | None,
        strawberry.argument(
            description="False (default): persons who reached `step`; true: who reached the step before it and"
            " stopped there."
        ),
    ] = False,
    first: Annotated[int | None, strawberry.argument(description="Page size (1..1000, default 100).")] = None,
    after: Annotated[str | None, strawberry.argument(description="The endCursor of the previous page.")] = None,
    breakdown_value: Annotated[
        str | None, strawberry.argument(description="Only persons with this breakdown value (needs query.breakdown).")
    ] = None,
) -> FunnelPersons:
    found = await service.persons(
        **await _common(info, query), step=step, dropped=bool(dropped), first=first, after=after, breakdown_value=breakdown_value
    )
    return FunnelPersons(
        person_ids=found.person_ids, total_count=found.total, end_cursor=found.end_cursor, has_next_page=found.has_next_page
    )


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The funnels domain's reads, merged into the root by schema.root."""

    funnel: Funnel = guarded(
        Access.ORG_READERS, funnel,
        "A funnel: persons per step, conversion rates, drop-off and times between steps, optionally per breakdown value.",
    )
    funnel_conversion_over_time: FunnelConversionOverTime = guarded(
        Access.ORG_READERS, funnel_conversion_over_time,
        "A funnel's conversion from the first to the last step per period of entry.",
    )
    funnel_time_to_convert: FunnelTimeToConvert = guarded(
        Access.ORG_READERS, funnel_time_to_convert,
        "A histogram of the seconds a funnel's persons took between two steps (default first to last).",
    )
    funnel_persons: FunnelPersons = guarded(
        Access.ORG_READERS, funnel_persons,
        "The persons behind a funnel step, converted or dropped off, a page at a time.",
    )

