"""The lifecycle and stickiness insights: their query inputs and series."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.common import Granularity, ResolvedRange, TimeRangeInput
from schema.insights import EventMatcherInput


@strawberry.input(description="Lifecycle: persons doing one event, new, returning, resurrecting and dormant per period.")
class LifecycleQueryInput:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    range_: TimeRangeInput = strawberry.field(name="range", description="The periods to show (whole local periods).")
    event: EventMatcherInput = strawberry.field(description="The event that makes a person active.")
    granularity: Granularity | None = strawberry.field(default=None, description="Period size (default DAY).")


@strawberry.type(description="One period of a lifecycle; null counts: the period has not begun.")
class LifecyclePeriod:
    start: datetime = strawberry.field(description="The period's local start (UTC instant).")
    new: int | None = strawberry.field(description="Persons whose first event of the matcher ever is in this period.")
    returning: int | None = strawberry.field(description="Active in this period and the previous one.")
    resurrecting: int | None = strawberry.field(
        description="Active in this period, not in the previous one, but in an earlier one."
    )
    dormant: int | None = strawberry.field(
        description="Active in the previous period and not in this one, as a negative number (the current period: not yet)."
    )


@strawberry.type(description="A lifecycle series.")
class LifecycleResult:
    range: ResolvedRange = strawberry.field(description="The range, resolved.")
    granularity: Granularity = strawberry.field(description="The period size.")
    as_of: datetime = strawberry.field(description="The instant that decided which periods have begun.")
    periods: list[LifecyclePeriod] = strawberry.field(description="Every period of the range, in order.")


@strawberry.input(description="Stickiness: persons by the number of the range's periods in which they did one event.")
class StickinessQueryInput:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    range_: TimeRangeInput = strawberry.field(name="range", description="The periods counted (whole local periods).")
    event: EventMatcherInput = strawberry.field(description="The event counted.")
    granularity: Granularity | None = strawberry.field(default=None, description="Period size (default DAY).")


@strawberry.type(description="How many persons were active in exactly this many periods.")
class StickinessCount:
    active_periods: int = strawberry.field(description="Periods of the range with at least one of their events (1..N).")
    persons: int = strawberry.field(description="Persons active in exactly that many periods.")


@strawberry.type(description="A stickiness distribution.")
class StickinessResult:
    range: ResolvedRange = strawberry.field(description="The range, resolved.")
    granularity: Granularity = strawberry.field(description="The period size.")
    periods: int = strawberry.field(description="N: the range's periods.")
    persons: int = strawberry.field(description="Persons active in at least one period.")
    counts: list[StickinessCount] = strawberry.field(description="activePeriods 1..N, zero-filled.")
