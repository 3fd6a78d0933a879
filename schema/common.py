"""Inputs and enums shared by several domains."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry


@strawberry.enum(description="A moving window ending now, in the organization's time zone.")
class RangePreset(Enum):
    LAST_24_HOURS = strawberry.enum_value("last_24_hours", description="The current hour and the 23 before it.")
    LAST_7_DAYS = strawberry.enum_value("last_7_days", description="Today and the 6 days before it.")
    LAST_30_DAYS = strawberry.enum_value("last_30_days", description="Today and the 29 days before it.")


@strawberry.enum(description="Bucket size of a time series; buckets follow the organization's time zone.")
class Granularity(Enum):
    HOUR = strawberry.enum_value("hour", description="Clock hours.")
    DAY = strawberry.enum_value("day", description="Calendar days.")
    WEEK = strawberry.enum_value("week", description="ISO weeks, starting on Monday.")
    MONTH = strawberry.enum_value("month", description="Calendar months.")


@strawberry.input(description="Either a preset, or a custom `from`/`to` pair (to is exclusive).")
class TimeRangeInput:
    preset: RangePreset | None = strawberry.field(default=None, description="A moving window ending now.")
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Start of a custom range (inclusive, ISO 8601 with offset)."
    )
    to: datetime | None = strawberry.field(
        default=None, description="End of a custom range (exclusive); defaults to now."
    )


@strawberry.type(description="The range a report covered, after presets were resolved.")
class ResolvedRange:
    from_: datetime = strawberry.field(name="from", description="Inclusive start (UTC).")
    to: datetime = strawberry.field(description="Exclusive end (UTC).")
    timezone: str = strawberry.field(description="IANA time zone used for buckets.")


@strawberry.type(description="An amount of money in integer minor units (cents) with its ISO 4217 currency.")
class Money:
    amount_minor: int = strawberry.field(description="Integer minor units, e.g. 1999 for 19.99 USD.")
    currency: str = strawberry.field(description="ISO 4217 code, e.g. USD.")
