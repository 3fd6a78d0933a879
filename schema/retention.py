"""The retention insight: its query input and its cohort grid."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Granularity, ResolvedRange, TimeRangeInput
from schema.insights import BreakdownInput, EventMatcherInput


@strawberry.enum(description="Which start events put a person in a cohort.")
class RetentionCohortKind(Enum):
    FIRST_TIME = strawberry.enum_value(
        "first_time",
        description="Their first start event ever (over all history): one cohort per person, if that period is in the range.",
    )
    RECURRING = strawberry.enum_value(
        "recurring", description="Every period of the range in which they did the start event (the default)."
    )


@strawberry.enum(description="When a return counts for the k-th period after the cohort's.")
class RetentionMode(Enum):
    EXACT = strawberry.enum_value("exact", description="They did the return event in exactly that period (the default).")
    ON_OR_AFTER = strawberry.enum_value("on_or_after", description="In that period or any later one (rolling).")


@strawberry.input(description="Retention: of the persons who did the start event in a period, who did the return event later.")
class RetentionQueryInput:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    range_: TimeRangeInput = strawberry.field(
        name="range",
        description="Selects the cohorts' periods (whole local periods); returns count whenever they happen, up to now.",
    )
    start_event: EventMatcherInput = strawberry.field(description="The event that puts a person in a cohort.")
    return_event: EventMatcherInput = strawberry.field(description="The event that counts as coming back.")
    period: Granularity | None = strawberry.field(
        default=None, description="Cohort and return period (default DAY); the organization's local periods."
    )
    periods: int | None = strawberry.field(
        default=None,
        description="How many return periods after the cohort's (1..100, default 8): counts has periods + 1 cells.",
    )
    cohort_kind: RetentionCohortKind | None = strawberry.field(default=None, description="Default RECURRING.")
    mode: RetentionMode | None = strawberry.field(default=None, description="Default EXACT.")
    breakdown: BreakdownInput | None = strawberry.field(
        default=None,
        description="Split cohorts by the value on the person's first start event of the cohort's period (first touch).",
    )


@strawberry.type(description="One cohort: the persons who entered it in its period, and who of them came back.")
class RetentionCohort:
    start: datetime = strawberry.field(description="The cohort period's local start (UTC instant).")
    size: int = strawberry.field(description="Persons in the cohort (0 while its period has not begun).")
    counts: list[int | None] = strawberry.field(
        description="counts[0] is the size; counts[k] the persons who came back k periods later (or later, ON_OR_AFTER). "
        "Null: that period has not begun yet (never 0). The current period is shown and can still grow."
    )
    fractions: list[float | None] = strawberry.field(
        description="counts[k] / size; null when the cell is null or the cohort is empty."
    )


@strawberry.type(description="The cohorts of one breakdown value.")
class RetentionBreakdown:
    value: str | None = strawberry.field(
        description="The start event's value; null when it did not carry the property; $other gathers the values past the limit."
    )
    other: bool = strawberry.field(description="True for the row gathering the values past the limit.")
    cohorts: list[RetentionCohort] = strawberry.field(description="The same periods as the result's cohorts.")
    average: list[float | None] = strawberry.field(description="As the result's average, over these cohorts.")


@strawberry.type(description="A retention grid: one row per cohort period of the range.")
class RetentionResult:
    range: ResolvedRange = strawberry.field(description="The range, resolved.")
    period: Granularity = strawberry.field(description="The period of cohorts and returns.")
    periods: int = strawberry.field(description="Return periods after the cohort's (each counts list has periods + 1 cells).")
    cohort_kind: RetentionCohortKind = strawberry.field(description="How cohorts were formed.")
    mode: RetentionMode = strawberry.field(description="How returns were counted.")
    as_of: datetime = strawberry.field(description="The instant that decided which periods have begun.")
    cohorts: list[RetentionCohort] = strawberry.field(description="Every cohort period of the range, in order.")
    average: list[float | None] = strawberry.field(
        description="Per k: the observed counts over the sizes of the cohorts that observed it (weighted by size); "
        "null when no cohort with persons has observed it."
    )
    breakdowns: list[RetentionBreakdown] | None = strawberry.field(
        description="With a breakdown: one row per value (largest first, null then $other last); they add up to cohorts."
    )
