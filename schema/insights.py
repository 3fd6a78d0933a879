"""The grammar every insight shares (property filters, breakdowns, event matchers) and the
trends and sessions insights' own types."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from schema.common import Granularity, ResolvedRange, TimeRangeInput


@strawberry.enum(description="Where a filtered or broken-down property comes from.")
class PropertySource(Enum):
    EVENT = strawberry.enum_value("event", description="A key of the event's properties.")
    PERSON = strawberry.enum_value("person", description="A person property ($set, $set_once, identify).")
    DIMENSION = strawberry.enum_value(
        "dimension",
        description="A stored dimension: utm_source, utm_medium, utm_campaign, utm_term, utm_content, referrer_domain,"
        " landing_page, url, country, region, city, device_type, browser, os.",
    )
    COHORT = strawberry.enum_value(
        "cohort", description="Membership of a cohort; the key is the cohort's id (filters: IS_SET / IS_NOT_SET)."
    )


@strawberry.enum(description="How a property filter compares; values compare as text, GREATER_THAN / LESS_THAN as numbers.")
class FilterOperator(Enum):
    EQUALS = strawberry.enum_value("equals", description="Equal to the value (a list: to one of them).")
    NOT_EQUALS = strawberry.enum_value("not_equals", description="Not equal, or the property is missing.")
    CONTAINS = strawberry.enum_value("contains", description="Contains the text, ignoring case.")
    NOT_CONTAINS = strawberry.enum_value("not_contains", description="Does not contain the text, or is missing.")
    REGEX = strawberry.enum_value("regex", description="Matches the POSIX regular expression.")
    NOT_REGEX = strawberry.enum_value("not_regex", description="Does not match, or is missing.")
    GREATER_THAN = strawberry.enum_value("greater_than", description="A number greater than the value.")
    LESS_THAN = strawberry.enum_value("less_than", description="A number less than the value.")
    IS_SET = strawberry.enum_value("is_set", description="Present and not null (cohorts: a member).")
    IS_NOT_SET = strawberry.enum_value("is_not_set", description="Missing or null (cohorts: not a member).")
    IN_LIST = strawberry.enum_value("in_list", description="Equal to one of the values (value is a list).")
    NOT_IN_LIST = strawberry.enum_value("not_in_list", description="None of the values, or missing.")


@strawberry.enum(description="Which step's value a funnel breakdown takes.")
class BreakdownAttribution(Enum):
    FIRST_TOUCH = strawberry.enum_value("first_touch", description="The value on the first step.")
    LAST_TOUCH = strawberry.enum_value("last_touch", description="The value on the last step reached.")
    STEP = strawberry.enum_value("step", description="The value on the step named by `step`.")


@strawberry.input(description="One property condition an event must meet.")
class PropertyFilterInput:
    source: PropertySource = strawberry.field(default=PropertySource.EVENT, description="Where the property comes from.")
    key: str = strawberry.field(description="The property's key (a dimension's name; a cohort's id).")
    operator: FilterOperator | None = strawberry.field(default=None, description="Defaults to EQUALS (cohorts: IS_SET).")
    value: JSON | None = strawberry.field(
        default=None, description="A string, number or boolean; a list for IN_LIST / NOT_IN_LIST; none for IS_SET."
    )


@strawberry.input(description="A property named by its source and key.")
class PropertyKeyInput:
    source: PropertySource = strawberry.field(default=PropertySource.EVENT, description="Where the property comes from.")
    key: str = strawberry.field(description="The property's key.")


@strawberry.input(description="Split an insight by a property's values: the top `limit` by volume, the rest as other.")
class BreakdownInput:
    source: PropertySource = strawberry.field(default=PropertySource.EVENT, description="Where the property comes from.")
    key: str = strawberry.field(description="The property's key (a dimension's name; a cohort's id).")
    limit: int | None = strawberry.field(default=None, description="How many values to show (1..100, default 10).")
    attribution: BreakdownAttribution | None = strawberry.field(
        default=None, description="Funnels: which step's value counts (default FIRST_TOUCH)."
    )
    step: int | None = strawberry.field(default=None, description="Funnels with STEP attribution: the step (0-based).")


@strawberry.input(description="Events of one name that meet every filter.")
class EventMatcherInput:
    event: str = strawberry.field(description="The event name, e.g. signup or booking.completed; $all for every event.")
    filters: list[PropertyFilterInput] | None = strawberry.field(default=None, description="All must hold.")




@strawberry.enum(description="What a trend series counts or measures per period.")
class TrendMath(Enum):
    TOTAL = strawberry.enum_value("total", description="Events.")
    UNIQUE_PERSONS = strawberry.enum_value("unique_persons", description="Distinct persons (DAU at DAY granularity).")
    UNIQUE_SESSIONS = strawberry.enum_value("unique_sessions", description="Distinct sessions.")
    SUM = strawberry.enum_value("sum", description="Sum of a numeric event property.")
    AVERAGE = strawberry.enum_value("average", description="Mean of a numeric event property.")
    MIN = strawberry.enum_value("min", description="Smallest value of a numeric event property.")
    MAX = strawberry.enum_value("max", description="Largest value of a numeric event property.")
    MEDIAN = strawberry.enum_value("median", description="Median of a numeric event property (linear interpolation).")
    P90 = strawberry.enum_value("p90", description="90th percentile of a numeric event property.")
    P95 = strawberry.enum_value("p95", description="95th percentile of a numeric event property.")
    P99 = strawberry.enum_value("p99", description="99th percentile of a numeric event property.")
    PER_PERSON_AVERAGE = strawberry.enum_value("per_person_average", description="Events per person.")
    WEEKLY_ACTIVE = strawberry.enum_value(
        "weekly_active", description="Persons active in the 7 local days ending with the period (rolling WAU)."
    )
    MONTHLY_ACTIVE = strawberry.enum_value(
        "monthly_active", description="Persons active in the 30 local days ending with the period (rolling MAU)."
    )


@strawberry.enum(description="Which range a trend line covers.")
class TrendCompare(Enum):
    CURRENT = strawberry.enum_value("current", description="The range asked for.")
    PREVIOUS = strawberry.enum_value("previous", description="As many periods just before it.")


@strawberry.input(description="One series of a trend: events of one name, filtered, measured by a math.")
class TrendSeriesInput:
    event: str = strawberry.field(description="The event name; $all for every event.")
    filters: list[PropertyFilterInput] | None = strawberry.field(default=None, description="All must hold.")
    math: TrendMath = strawberry.field(default=TrendMath.TOTAL, description="What to count or measure (default TOTAL).")
    property: str | None = strawberry.field(
        default=None, description="The numeric event property SUM, AVERAGE, MIN, MAX, MEDIAN and P90..P99 read."
    )
    label: str | None = strawberry.field(default=None, description="A name for the line (default: the event name).")


@strawberry.input(description="A trends question: one or more series per period.")
class TrendsQueryInput:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    range: TimeRangeInput = strawberry.field(description="A preset or a custom from/to.")
    series: list[TrendSeriesInput] = strawberry.field(description="1 to 20 series, lettered A, B, C... for formulas.")
    granularity: Granularity | None = strawberry.field(default=None, description="Period size (default DAY).")
    breakdown: BreakdownInput | None = strawberry.field(default=None, description="Split every series by a property.")
    compare: bool = strawberry.field(default=False, description="Add each line over the periods just before the range.")
    formula: str | None = strawberry.field(
        default=None, description="Combine series by letter, e.g. B / A * 100; replaces the series' own lines."
    )


@strawberry.type(description="One period of a trend line.")
class TrendPoint:
    start: datetime = strawberry.field(description="The period's local start (UTC instant).")
    value: float = strawberry.field(description="The math's value; 0 when the period has no events.")


@strawberry.type(description="One line of a trend: a series (or the formula) for one breakdown value and range.")
class TrendLine:
    label: str = strawberry.field(description="The series' label or event name, or the formula.")
    series_index: int | None = strawberry.field(description="Which series (0-based); null for a formula's line.")
    math: TrendMath | None = strawberry.field(description="The series' math; null for a formula's line.")
    breakdown_value: str | None = strawberry.field(
        description="The breakdown value (null: no breakdown or the property is missing; $other: the rest)."
    )
    is_other: bool = strawberry.field(description="True for the line gathering values past the breakdown's limit.")
    compare: TrendCompare = strawberry.field(description="The range asked for, or the one before it.")
    total: float = strawberry.field(
        description="The math over the whole range (persons counted once); the last point for rolling maths."
    )
    points: list[TrendPoint] = strawberry.field(description="One per period, zero-filled.")


@strawberry.type(description="A trend's answer.")
class TrendsResult:
    range: ResolvedRange = strawberry.field(description="The range after presets were resolved.")
    granularity: Granularity = strawberry.field(description="Period size.")
    series: list[TrendLine] = strawberry.field(description="The lines, series by series (or the formula's).")


@strawberry.type(description="Sessions that started in one period (or the whole range).")
class SessionPeriod:
    start: datetime = strawberry.field(description="The period's local start (UTC instant).")
    sessions: int = strawberry.field(description="Sessions whose first event is in the period.")
    average_duration_seconds: float = strawberry.field(description="Mean time from first to last event.")
    pages_per_session: float = strawberry.field(description="Mean number of events with a URL.")
    bounce_rate: float = strawberry.field(description="Share (0..1) of sessions with exactly one event.")


@strawberry.type(description="A page and how many sessions entered or left there.")
class PageSessions:
    page: str = strawberry.field(description="The URL without query string or fragment.")
    sessions: int = strawberry.field(description="Sessions.")


@strawberry.type(description="Visits: duration, depth, bounces, entry and exit pages.")
class SessionMetrics:
    range: ResolvedRange = strawberry.field(description="The range after presets were resolved.")
    granularity: Granularity = strawberry.field(description="Period size.")
    total: SessionPeriod = strawberry.field(description="Every session that started in the range.")
    periods: list[SessionPeriod] = strawberry.field(description="One per period, zero-filled.")
    top_entry_pages: list[PageSessions] = strawberry.field(description="The 10 pages most sessions started on.")
    top_exit_pages: list[PageSessions] = strawberry.field(description="The 10 pages most sessions ended on.")


@strawberry.type(description="Users in one period.")
class UsersPoint:
    start: datetime = strawberry.field(description="The period's local start (UTC instant).")
    active: int = strawberry.field(description="Persons with at least one event in the period.")
    weekly_active: int = strawberry.field(description="Persons active in the 7 local days ending with the period.")
    monthly_active: int = strawberry.field(description="Persons active in the 30 local days ending with the period.")
    churn_rate: float | None = strawberry.field(
        description="Share of the previous period's active persons not active in this one; null for the first period."
    )


@strawberry.type(description="Retention on one day after a person's first event.")
class DayRetention:
    day: int = strawberry.field(description="N: the local day after the first one (1, 7, 30).")
    rate: float | None = strawberry.field(
        description="Share active again on exactly that day, over the persons whose day N has ended; null when none has."
    )


@strawberry.type(description="The users page: activity, stickiness, retention, churn and visit length.")
class UserMetrics:
    range: ResolvedRange = strawberry.field(description="The range after presets were resolved.")
    granularity: Granularity = strawberry.field(description="Period size of the points.")
    active: int = strawberry.field(description="Persons with at least one event in the range.")
    dau: float = strawberry.field(description="Mean daily active persons over the range's days.")
    wau: int = strawberry.field(description="Persons active in the last 7 local days of the range.")
    mau: int = strawberry.field(description="Persons active in the last 30 local days of the range.")
    stickiness: float = strawberry.field(description="Mean of DAU / MAU over the range's days (0..1).")
    retention: list[DayRetention] = strawberry.field(description="Day 1, 7 and 30 retention of the range's new persons.")
    churn_rate: float | None = strawberry.field(
        description="Share of a period's active persons not active in the next, over the range's pairs of periods."
    )
    average_session_duration_seconds: float = strawberry.field(description="Mean session duration in the range.")
    points: list[UsersPoint] = strawberry.field(description="One per period.")
