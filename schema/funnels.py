"""The funnel insight's types: its query input and its answers (steps, breakdowns, conversion
over time, time to convert, persons)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Granularity, ResolvedRange, TimeRangeInput
from schema.insights import BreakdownInput, EventMatcherInput, PropertyFilterInput, PropertyKeyInput

DEFAULT_WINDOW_SECONDS = 14 * 86400


@strawberry.enum(description="How a funnel's steps must follow each other.")
class FunnelOrder(Enum):
    ORDERED = strawberry.enum_value("ordered", description="In order; other events may come between steps.")
    STRICT = strawberry.enum_value(
        "strict", description="In order, and no event of any kind of the person between consecutive steps."
    )
    UNORDERED = strawberry.enum_value("unordered", description="In any order, inside the conversion window.")


@strawberry.input(description="Attempts with this event between two steps are dropped (they count at no step).")
class FunnelExclusionInput:
    event: str = strawberry.field(description="The excluded event's name.")
    filters: list[PropertyFilterInput] | None = strawberry.field(default=None, description="All must hold.")
    from_step: int = strawberry.field(description="After this step (0-based) ...")
    to_step: int = strawberry.field(description="... and before this one (after fromStep).")


@strawberry.input(description="A funnel: who goes through the steps, within the conversion window.")
class FunnelQueryInput:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    range: TimeRangeInput = strawberry.field(description="When the first step happens (later steps may follow past its end).")
    steps: list[EventMatcherInput] = strawberry.field(description="2 to 20 steps, in order (0-based).")
    order: FunnelOrder | None = strawberry.field(
        default=FunnelOrder.ORDERED, description="ORDERED (default; null means it too), STRICT or UNORDERED."
    )
    conversion_window_seconds: int | None = strawberry.field(
        default=DEFAULT_WINDOW_SECONDS,
        description="Seconds from the first step within which later steps count (bound included; default 14 days,"
        " at most 365 days; null means the default).",
    )
    exclusions: list[FunnelExclusionInput] | None = strawberry.field(
        default=None, description="Events that drop an attempt when they happen between two of its steps."
    )
    breakdown: BreakdownInput | None = strawberry.field(
        default=None,
        description="Split by a property's value on the first step (FIRST_TOUCH), the last step reached (LAST_TOUCH)"
        " or a named step (STEP); the top `limit` values by persons at step 0, then other.",
    )
    hold_constant: list[PropertyKeyInput] | None = strawberry.field(
        default=None,
        description="Properties every step of an attempt must share (a person counts once per combination).",
    )


@strawberry.type(description="One step of a funnel.")
class FunnelStep:
    index: int = strawberry.field(description="The step, from 0.")
    event: str = strawberry.field(description="The step's event name.")
    count: int = strawberry.field(description="Persons who reached this step.")
    conversion_rate: float = strawberry.field(description="count / persons at step 0 (0..1; 0 when nobody entered).")
    conversion_rate_from_previous: float = strawberry.field(description="count / persons at the previous step (0..1).")
    drop_off: int = strawberry.field(description="Persons at the previous step who did not reach this one (0 at step 0).")
    average_seconds_to_convert: float | None = strawberry.field(
        description="Mean seconds from the previous step (null at step 0 and when nobody reached it)."
    )
    median_seconds_to_convert: float | None = strawberry.field(
        description="Median seconds from the previous step (interpolated; null at step 0 and when nobody reached it)."
    )


@strawberry.type(description="The funnel of the persons with one breakdown value.")
class FunnelBreakdown:
    value: str | None = strawberry.field(description="The value (null: persons without one; `$other`: the rest).")
    is_other: bool = strawberry.field(description="True for the group of every value past the top `limit`.")
    steps: list[FunnelStep] = strawberry.field(description="The steps for this value.")


@strawberry.type(description="A funnel's answer.")
class Funnel:
    range: ResolvedRange = strawberry.field(description="The range the first step was taken from.")
    steps: list[FunnelStep] = strawberry.field(description="Every step, in order.")
    breakdowns: list[FunnelBreakdown] = strawberry.field(
        description="Per breakdown value, most persons first, other last (empty without a breakdown)."
    )


@strawberry.type(description="Conversion from the first to the last step, per period of entry.")
class FunnelConversionOverTime:
    range: ResolvedRange = strawberry.field(description="The range the first step was taken from.")
    granularity: Granularity = strawberry.field(description="The periods' size, in the organization's time zone.")
    starts: list[datetime] = strawberry.field(description="Each period's start.")
    entered: list[int] = strawberry.field(description="Persons whose counted attempt started in the period.")
    converted: list[int] = strawberry.field(description="Of them, those who reached the last step.")
    conversion_rates: list[float] = strawberry.field(description="converted / entered (0 when nobody entered).")


@strawberry.type(description="How long persons took between two steps: equal-width bins of seconds.")
class FunnelTimeToConvert:
    from_step: int = strawberry.field(description="From this step ...")
    to_step: int = strawberry.field(description="... to this one.")
    bin_starts_seconds: list[float] = strawberry.field(description="Each bin's lower bound in seconds (included).")
    bin_width_seconds: float = strawberry.field(description="The bins' width in seconds (the last bin includes its end).")
    counts: list[int] = strawberry.field(description="Persons per bin.")
    total: int = strawberry.field(description="Persons who reached toStep.")
    average_seconds: float | None = strawberry.field(description="Mean seconds (null when nobody converted).")
    median_seconds: float | None = strawberry.field(description="Median seconds (null when nobody converted).")


@strawberry.type(description="A page of the persons behind a funnel step, ordered by id.")
class FunnelPersons:
    person_ids: list[str] = strawberry.field(description="Person keys ('u:<user id>', 'a:<anonymous id>', ...).")
    total_count: int = strawberry.field(description="Persons in every page.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")
    has_next_page: bool = strawberry.field(description="True when more persons follow.")
