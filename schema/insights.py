"""The grammar every insight shares (property filters, breakdowns, event matchers) and the
trends and sessions insights' own types."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.scalars import JSON


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
    event: str = strawberry.field(description="The event name, e.g. signup or booking.completed.")
    filters: list[PropertyFilterInput] | None = strawberry.field(default=None, description="All must hold.")


