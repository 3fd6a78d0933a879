"""One grammar for every insight: property filters, breakdowns and event matchers, validated
with the field they came from and compiled to SQL over `events e` with parameters.

A property comes from one of four sources:
- EVENT: a key of the event's `properties` JSON;
- PERSON: a key of the person's properties (`$set` / `$set_once` / identify);
- DIMENSION: a column pulsegraph stored with the event (UTM, referrer, geo, device, ...);
- COHORT: membership of a cohort, whose id is the key (operator IS_SET: member, IS_NOT_SET: not).

Values compare as text (a JSON number 5 matches "5"); GREATER_THAN and LESS_THAN compare
numbers and skip values that are not numbers; NOT_EQUALS, NOT_CONTAINS, NOT_REGEX and
NOT_IN_LIST match events where the property is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from app.errors import BadInput

MAX_FILTERS = 30
MAX_LIST_VALUES = 1000
MAX_KEY_CHARS = 200
MAX_VALUE_CHARS = 2000
MAX_BREAKDOWN_LIMIT = 100
DEFAULT_BREAKDOWN_LIMIT = 10
OTHER = "$other"  # the breakdown value that gathers every value past the top N
ALL_EVENTS = "$all"  # the event name that matches every event

PERSON = "COALESCE(pa.person_id, e.visitor_id)"
"""The person of an event `e`, as every insight reads it: take it through `Sql.person()`, which
makes `Sql.events_from()` add the alias join it needs."""


class PropertySource(str, Enum):
    EVENT = "event"
    PERSON = "person"
    DIMENSION = "dimension"
    COHORT = "cohort"


class FilterOperator(str, Enum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    REGEX = "regex"
    NOT_REGEX = "not_regex"
    GREATER_THAN = "greater_than"
    LESS_THAN = "less_than"
    IS_SET = "is_set"
    IS_NOT_SET = "is_not_set"
    IN_LIST = "in_list"
    NOT_IN_LIST = "not_in_list"


class Attribution(str, Enum):
    """Which step's value a funnel breakdown takes (other insights read the event's own)."""

    FIRST_TOUCH = "first_touch"
    LAST_TOUCH = "last_touch"
    STEP = "step"


# Stored dimensions: the column (or per-event expression) each name reads, as text.
DIMENSIONS: dict[str, str] = {
    "utm_source": "e.utm_source",
    "utm_medium": "e.utm_medium",
    "utm_campaign": "e.utm_campaign",
    "utm_term": "e.utm_term",
    "utm_content": "e.utm_content",
    "referrer_domain": "e.referrer_domain",
    "landing_page": (
        "(SELECT s.landing_page FROM sessions s WHERE s.organization_id = e.organization_id AND s.id = e.session_id)"
    ),
    "url": "e.url",
    "profile_id": "e.profile_id::text",
    "country": "e.country::text",
    "region": "e.region",
    "city": "e.city",
    "device_type": "e.device_type",
    "browser": "e.browser",
    "os": "e.os",
}

NUMERIC_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?\s*$"
NO_VALUE_OPERATORS = {FilterOperator.IS_SET, FilterOperator.IS_NOT_SET}
LIST_OPERATORS = {FilterOperator.IN_LIST, FilterOperator.NOT_IN_LIST}
NUMERIC_OPERATORS = {FilterOperator.GREATER_THAN, FilterOperator.LESS_THAN}
REGEX_OPERATORS = {FilterOperator.REGEX, FilterOperator.NOT_REGEX}


@dataclass(frozen=True, slots=True)
class PropertyKey:
    source: PropertySource
    key: str


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    source: PropertySource
    key: str
    operator: FilterOperator
    value: Any = None  # a JSON scalar, or a tuple of them for IN_LIST / NOT_IN_LIST
    field: str = "filters"  # where it came from, for errors found later (a regex PostgreSQL refuses)


@dataclass(frozen=True, slots=True)
class Breakdown:
    source: PropertySource
    key: str
    limit: int = DEFAULT_BREAKDOWN_LIMIT
    attribution: Attribution = Attribution.FIRST_TOUCH
    step: int | None = None


@dataclass(frozen=True, slots=True)
class EventMatcher:
    event: str
    filters: tuple[PropertyFilter, ...] = ()


# -- validation -----------------------------------------------------------------------------


def property_key(source: PropertySource, key: str, field: str) -> PropertyKey:
    """A source and key that exist in the grammar (a dimension must be one pulsegraph stores)."""
    key = (key or "").strip()
    if not key:
        raise BadInput("a property key must not be empty", field=f"{field}.key")
    if len(key) > MAX_KEY_CHARS:
        raise BadInput(f"a property key has at most {MAX_KEY_CHARS} characters", field=f"{field}.key")
    if source is PropertySource.DIMENSION and key not in DIMENSIONS:
        known = ", ".join(sorted(DIMENSIONS))
        raise BadInput(f"unknown dimension {key!r}; one of: {known}", field=f"{field}.key")
    if source is PropertySource.COHORT:
        cohort_id(key, f"{field}.key")
    return PropertyKey(source, key)


def cohort_id(value: str, field: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadInput("a cohort key is the cohort's id", field=field) from None


def property_filter(
    *, source: PropertySource, key: str, operator: FilterOperator | None, value: Any, field: str
) -> PropertyFilter:
    """A filter checked against its operator: the value it needs, of the type it needs."""
    checked = property_key(source, key, field)
    if source is PropertySource.COHORT:
        operator = operator or FilterOperator.IS_SET
        if operator not in NO_VALUE_OPERATORS:
            raise BadInput("a cohort filter is IS_SET (member) or IS_NOT_SET (not a member)", field=f"{field}.operator")
        return PropertyFilter(source, checked.key, operator, None, field)
    operator = operator or FilterOperator.EQUALS
    if operator in NO_VALUE_OPERATORS:
        return PropertyFilter(source, checked.key, operator, None, field)
    if value is None:
        raise BadInput(f"{operator.name} needs a value", field=f"{field}.value")
    if operator in LIST_OPERATORS or (operator in (FilterOperator.EQUALS, FilterOperator.NOT_EQUALS) and isinstance(value, list)):
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > MAX_LIST_VALUES:
            raise BadInput(f"a list holds 1 to {MAX_LIST_VALUES} values", field=f"{field}.value")
        texts = tuple(_scalar_text(v, f"{field}.value") for v in values)
        list_operator = FilterOperator.NOT_IN_LIST if operator in (FilterOperator.NOT_IN_LIST, FilterOperator.NOT_EQUALS) else FilterOperator.IN_LIST
        return PropertyFilter(source, checked.key, list_operator, texts, field)
    if operator in NUMERIC_OPERATORS:
        return PropertyFilter(source, checked.key, operator, _number(value, f"{field}.value"), field)
    text = _scalar_text(value, f"{field}.value")
    if operator in REGEX_OPERATORS:
        try:
            re.compile(text)
        except re.error as exc:
            raise BadInput(f"the regular expression does not compile: {exc}", field=f"{field}.value") from None
    return PropertyFilter(source, checked.key, operator, text, field)


def _scalar_text(value: Any, field: str) -> str:
    """A JSON scalar as the text PostgreSQL's ->> gives for it."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = value if isinstance(value, str) else json.dumps(value)
    else:
        raise BadInput("a filter value is a string, number or boolean (or a list of them)", field=field)
    if len(text) > MAX_VALUE_CHARS:
        raise BadInput(f"a filter value has at most {MAX_VALUE_CHARS} characters", field=field)
    return text


def _number(value: Any, field: str) -> Decimal:
    if isinstance(value, bool):
        raise BadInput("GREATER_THAN and LESS_THAN compare numbers", field=field)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise BadInput("GREATER_THAN and LESS_THAN compare numbers", field=field) from None
    if not number.is_finite():
        raise BadInput("GREATER_THAN and LESS_THAN compare finite numbers", field=field)
    return number


def breakdown(
    *, source: PropertySource, key: str, limit: int | None, attribution: Attribution | None, step: int | None, field: str
) -> Breakdown:
    if source is PropertySource.COHORT:  # one or more cohorts, by id, comma-separated
        ids = [cohort_id(part.strip(), f"{field}.key") for part in (key or "").split(",") if part.strip()]
        if not ids:
            raise BadInput("a cohort breakdown names one or more cohort ids", field=f"{field}.key")
        checked = PropertyKey(source, ",".join(ids))
    else:
        checked = property_key(source, key, field)
    limit = DEFAULT_BREAKDOWN_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_BREAKDOWN_LIMIT:
        raise BadInput(f"a breakdown shows 1 to {MAX_BREAKDOWN_LIMIT} values", field=f"{field}.limit")
    attribution = attribution or Attribution.FIRST_TOUCH
    if attribution is Attribution.STEP and step is None:
        raise BadInput("STEP attribution names the step", field=f"{field}.step")
    if step is not None and step < 0:
        raise BadInput("steps are numbered from 0", field=f"{field}.step")
    return Breakdown(checked.source, checked.key, limit, attribution, step)


def event_matcher(*, event: str, filters: list[PropertyFilter], field: str) -> EventMatcher:
    name = (event or "").strip()
    if not name:
        raise BadInput("an event name must not be empty", field=f"{field}.event")
    if len(name) > MAX_KEY_CHARS:
        raise BadInput(f"an event name has at most {MAX_KEY_CHARS} characters", field=f"{field}.event")
    if len(filters) > MAX_FILTERS:
        raise BadInput(f"at most {MAX_FILTERS} filters", field=f"{field}.filters")
    return EventMatcher(name, tuple(filters))


# -- compilation ----------------------------------------------------------------------------


@dataclass
class Sql:
    """Parameters of one statement, collected while its text is built, and what it joins."""

    params: list[Any] = field(default_factory=list)
    joins_aliases: bool = False
    joins_persons: bool = False
    regexes: list[tuple[str, str]] = field(default_factory=list)  # (pattern, field) PostgreSQL must accept
    # Read who did what per hour from the pre-aggregates instead of the events, each
    # visitor's history before this instant folded into their first hour (insights.rollups);
    # per day of the organization's zone instead of per hour when `actors_by_day`.
    actors_since: datetime | None = None
    actors_by_day: bool = False
    # The statement joins the events to a set it computed itself (a CTE), whose key
    # PostgreSQL has no statistics for: it guesses 200 distinct values and picks a nested loop
    # or a merge join over millions of rows. Such statements are planned with hash joins only.
    hash_joins: bool = False

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{cast}"

    def person(self) -> str:
        """The event's person (and the alias join it needs)."""
        self.joins_aliases = True
        return PERSON

    def events_from(self) -> str:
        """`events e` with the joins the statement read: identity links when it names a
        person, the person's row when it reads a person property. Call it last."""
        text = "events e" if self.actors_since is None else self.actors()
        if self.joins_aliases or self.joins_persons:
            text += " LEFT JOIN person_aliases pa ON pa.organization_id = e.organization_id AND pa.alias = e.visitor_id"
        if self.joins_persons:
            text += persons_join(PERSON)
        return text

    def starter_events(self, visitors: str = "starter_visitors sv") -> str:
        """`events e` (or `actors`, from `actors_since` on) of the persons whose visitor ids
        `visitors` lists (`sv`: visitor, person; `starters`, or `shipped` ones), the person
        being `sv.person`; with the person's row when the statement reads a person property.
        Call it last."""
        source = "events e" if self.actors_since is None else self.actors(recent=True)
        text = f"{source} JOIN {visitors} ON sv.visitor = e.visitor_id"
        if self.joins_persons:
            text += persons_join("sv.person")
        return text

    def actors(self, *, recent: bool = False) -> str:
        """An `e` with the columns person-period statements read (organization_id, type,
        visitor_id, occurred_at): one row per visitor, type and UTC hour (or local day) from
        `actors_since` on, and before it (unless only the `recent` rows are read) one row per
        visitor and type at their first hour, which is all "new", "first time" and "seen
        before" ask of older history."""
        since = self.param(self.actors_since, "timestamptz")
        table, column = ("event_actor_days_live", "day") if self.actors_by_day else ("event_actor_hours_live", "hour")
        rows = f"SELECT organization_id, type, visitor_id, {column} AS occurred_at FROM {table} WHERE {column} >= {since}"
        if not recent:
            rows = (
                "SELECT organization_id, type, visitor_id, first_hour AS occurred_at FROM event_actor_first_live"
                f" WHERE first_hour < {since} UNION ALL {rows}"
            )
        return f"({rows}) e"


def shipped(relation: str, columns: Sequence[str]) -> tuple[str, str]:
    """The CTE `shipped`: the `columns` of `relation` as arrays of one row (one pass of one
    aggregate node: the arrays list the rows in the same order); and the FROM item `sv` that
    unnests them back into rows.

    A CTE's rows cannot be read by parallel workers: a statement joining the events to one
    joins them in the leader process, after every worker has sent it all its events. Taken
    as arrays, the rows are computed once by the leader, handed to each worker as parameters
    and unnested there, so every worker joins its share of the events and sends on only the
    rows that matched."""
    arrays = ", ".join(f"array_agg({c}) AS a{i}" for i, c in enumerate(columns))
    unnested = ", ".join(f"(SELECT a{i} FROM shipped)" for i in range(len(columns)))
    return f"shipped AS (SELECT {arrays} FROM {relation})", f"unnest({unnested}) sv({', '.join(columns)})"


def visitors_of(org: str, persons: str, columns: Sequence[str] = ()) -> str:
    """Rows (visitor, person, *columns): every visitor id whose events are a person's of the
    relation `persons` (person, *columns): their own id unless it is itself linked to someone
    else, and every id linked to them. A visitor id is linked to one person at most, so each
    comes once."""
    extra = "".join(f", x.{c}" for c in columns)
    return (
        f"SELECT x.person AS visitor, x.person{extra} FROM {persons} x WHERE NOT EXISTS ("
        f"SELECT 1 FROM person_aliases pa WHERE pa.organization_id = {org} AND pa.alias = x.person)"
        f" UNION ALL SELECT pa.alias, x.person{extra} FROM {persons} x"
        f" JOIN person_aliases pa ON pa.organization_id = {org} AND pa.person_id = x.person"
    )


def persons_join(person: str) -> str:
    """The join that gives an event `e` its person's row `pp` (person properties), the person
    being `person`."""
    return f" LEFT JOIN persons pp ON pp.organization_id = e.organization_id AND pp.id = {person}"


def starters(
    sql: Sql, org: str, persons: str, columns: Sequence[str] = (), *, aliases: bool = True,
    subsets: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """The CTEs `starters(pid, person, *columns)` and `starter_visitors(visitor, pid, person,
    *columns)` for an insight that only counts some persons (those who did its first event):
    `persons` selects one row per such person (`person`, then `columns`); each is numbered
    (`pid`); and each gets a row per visitor id whose events are theirs (their own id unless
    it is itself linked to someone else, and every id linked to them). `subsets` names more
    CTEs like `starter_visitors`, each of the starters a condition keeps.

    The statement then joins the events to `starter_visitors` by visitor id, a hash on a few
    rows, rather than giving every event its person through the identity links first; and it
    sorts and groups by `pid`, a number, rather than by a text key. It is planned with hash
    joins only (`Sql.hash_joins`); grouped by visitor, these rows look few to the planner,
    which hashes them rather than the events (each of these CTEs is read once, so it is
    planned inside the statement, grouping and all)."""
    sql.hash_joins = True
    extra = "".join(f", {c}" for c in columns)
    numbered = f"starters AS MATERIALIZED (SELECT row_number() OVER () AS pid, person{extra} FROM ({persons}) s)"
    # grouped: the planner then estimates few rows (min() is the visitor's one person's value;
    # `row_number() OVER ()` numbers once: the CTE is materialized)
    picked = "".join(f", min({c}) AS {c}" for c in columns)

    def visitors(name: str, kept: str) -> str:
        own = (
            visitors_of(org, kept, ["pid", *columns]) if aliases else f"SELECT person AS visitor, person, pid{extra} FROM {kept} k"
        )
        return f"{name} AS (SELECT visitor, min(pid) AS pid, min(person) AS person{picked} FROM ({own}) v GROUP BY visitor)"

    ctes = [numbered, visitors("starter_visitors", "starters")]
    ctes += [visitors(name, f"(SELECT * FROM starters WHERE {kept})") for name, kept in (subsets or {}).items()]
    return ", ".join(ctes)


def value_text(sql: Sql, source: PropertySource, key: str) -> str:
    """The property's value as text (NULL when missing), for filters and breakdowns."""
    if source is PropertySource.EVENT:
        return f"(e.properties ->> {sql.param(key, 'text')})"
    if source is PropertySource.PERSON:
        sql.joins_persons = True
        return f"(pp.properties ->> {sql.param(key, 'text')})"
    if source is PropertySource.DIMENSION:
        return DIMENSIONS[key]
    raise ValueError(f"{source} has no value")  # cohorts are memberships


def cohort_membership(sql: Sql, cohort: str) -> str:
    return (
        f"EXISTS (SELECT 1 FROM cohort_members cm WHERE cm.organization_id = e.organization_id"
        f" AND cm.cohort_id = {sql.param(cohort, 'uuid')} AND cm.person_id = {sql.person()})"
    )


def filter_condition(sql: Sql, f: PropertyFilter) -> str:
    if f.source is PropertySource.COHORT:
        member = cohort_membership(sql, cohort_id(f.key, f.field))
        return member if f.operator is FilterOperator.IS_SET else f"NOT {member}"
    value = value_text(sql, f.source, f.key)
    op = f.operator
    if op is FilterOperator.IS_SET:
        return f"{value} IS NOT NULL"
    if op is FilterOperator.IS_NOT_SET:
        return f"{value} IS NULL"
    if op is FilterOperator.EQUALS:
        return f"{value} = {sql.param(f.value, 'text')}"
    if op is FilterOperator.NOT_EQUALS:
        return f"{value} IS DISTINCT FROM {sql.param(f.value, 'text')}"
    if op is FilterOperator.IN_LIST:
        return f"{value} = ANY({sql.param(list(f.value), 'text[]')})"
    if op is FilterOperator.NOT_IN_LIST:
        return f"NOT COALESCE({value} = ANY({sql.param(list(f.value), 'text[]')}), false)"
    if op in (FilterOperator.CONTAINS, FilterOperator.NOT_CONTAINS):
        pattern = sql.param("%" + _like_escaped(f.value) + "%", "text")
        return f"{value} ILIKE {pattern}" if op is FilterOperator.CONTAINS else f"COALESCE({value} NOT ILIKE {pattern}, true)"
    if op in REGEX_OPERATORS:
        sql.regexes.append((f.value, f"{f.field}.value"))
        pattern = sql.param(f.value, "text")
        return f"{value} ~ {pattern}" if op is FilterOperator.REGEX else f"COALESCE({value} !~ {pattern}, true)"
    number = numeric(value)
    comparison = ">" if op is FilterOperator.GREATER_THAN else "<"
    return f"{number} {comparison} {sql.param(f.value, 'numeric')}"


def numeric(value: str) -> str:
    """A text value as a number, NULL when it is not one (never an error mid-query)."""
    return f"(CASE WHEN {value} ~ '{NUMERIC_TEXT}' THEN ({value})::numeric END)"


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filters_condition(sql: Sql, filters: tuple[PropertyFilter, ...] | list[PropertyFilter]) -> str:
    return " AND ".join(f"({filter_condition(sql, f)})" for f in filters) or "true"


def matcher_condition(sql: Sql, matcher: EventMatcher) -> str:
    """The events one matcher takes: its name (any, for ALL_EVENTS) and every filter."""
    if matcher.event == ALL_EVENTS:
        return f"({filters_condition(sql, matcher.filters)})"
    return f"(e.type = {sql.param(matcher.event, 'text')} AND {filters_condition(sql, matcher.filters)})"


def breakdown_value(sql: Sql, b: Breakdown) -> str:
    """The breakdown's value of an event as text (cohort breakdowns join members instead)."""
    return value_text(sql, b.source, b.key)
