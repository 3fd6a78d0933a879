"""Large list variables coerced by app/fast_variables.py: the same coerced values as
graphql-core for valid input, and graphql-core's own errors, unchanged, for invalid input."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from graphql import parse
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.fast_variables import MIN_ITEMS, FastVariablesExecutor
from schema import build_schema

SCHEMA = build_schema()._schema
TRACK = parse("mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted } }")
NULLABLE = parse("mutation($e: [TrackEventInput]) { trackEvents(events: $e) { accepted } }")
DOMAIN = parse("mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted } }")


def event(i: int) -> dict[str, Any]:
    return {
        "type": "profile.viewed", "eventId": f"e-{i}", "profileId": "p-1", "occurredAt": "2026-11-22T10:00:00.123+01:00",
        "anonymousId": None, "engagementMs": 1200, "amountMinor": None, "properties": {"a": [1, {"b": None}], "c": "d"},
        "context": {"ip": "203.0.113.9", "userAgent": "UA", "dnt": False, "utmSource": None},
    }  # fmt: skip


def events(n: int = MIN_ITEMS + 2) -> list[dict[str, Any]]:
    return [event(i) for i in range(n)] + [{"type": "signup"}]


def build(executor: type, document: Any, variables: dict[str, Any]) -> Any:
    return executor.build(SCHEMA, document, raw_variable_values=copy.deepcopy(variables))


def outcome(executor: type, document: Any, variables: dict[str, Any]) -> Any:
    built = build(executor, document, variables)
    if isinstance(built, list):
        return [(e.message, e.path, e.extensions) for e in built]
    return built.variable_values.coerced, {k: v.value for k, v in built.variable_values.sources.items()}


@pytest.mark.parametrize("document", [TRACK, NULLABLE])
def test_valid_lists_coerce_to_what_graphql_core_gives(document: Any) -> None:
    variables = {"e": events()}
    fast = outcome(FastVariablesExecutor, document, variables)
    assert fast == outcome(StrawberryGraphQLCoreExecutionContext, document, variables)
    assert fast[0]["e"][0]["occurred_at"].utcoffset().total_seconds() == 3600


def test_the_fast_path_is_taken() -> None:
    built = build(FastVariablesExecutor, TRACK, {"e": events()})
    assert built.variable_values.coerced["e"][-1] == {"type": "signup", "event_id": None, "profile_id": None,
        "occurred_at": None, "anonymous_id": None, "user_id": None, "session_id": None, "engagement_ms": None,
        "amount_minor": None, "currency": None, "properties": None, "context": None}  # fmt: skip


def test_domain_events_with_an_enum_coerce_the_same() -> None:
    variables = {"e": [{"eventId": f"d-{i}", "type": "BOOKING_COMPLETED", "profileId": 7, "amountMinor": 100, "currency": "EUR"}
                       for i in range(MIN_ITEMS)]}  # fmt: skip
    assert outcome(FastVariablesExecutor, DOMAIN, variables) == outcome(StrawberryGraphQLCoreExecutionContext, DOMAIN, variables)


def _broken(change: Any) -> dict[str, Any]:
    batch = events()
    change(batch)
    return {"e": batch}


INVALID = {
    "unknown field": lambda b: b[3].update(colour="red"),
    "missing type": lambda b: b[4].pop("type"),
    "null type": lambda b: b[4].update(type=None),
    "null item": lambda b: b.__setitem__(2, None),
    "string for int": lambda b: b[1].update(engagementMs="12"),
    "int overflow": lambda b: b[1].update(engagementMs=2**40),
    "float for int": lambda b: b[1].update(engagementMs=12.0),
    "bool for string": lambda b: b[0].update(type=True),
    "bad datetime": lambda b: b[5].update(occurredAt="yesterday"),
    "context not an object": lambda b: b[6].update(context="x"),
    "unknown context field": lambda b: b[6]["context"].update(port=80),
    "item not an object": lambda b: b.__setitem__(7, "profile.viewed"),
    "several errors": lambda b: (b[1].update(engagementMs="x"), b[8].update(currency=3)),
}


@pytest.mark.parametrize("case", sorted(INVALID))
@pytest.mark.parametrize("document", [TRACK, NULLABLE])
def test_invalid_lists_get_graphql_cores_own_answer(case: str, document: Any) -> None:
    variables = _broken(INVALID[case])
    assert outcome(FastVariablesExecutor, document, variables) == outcome(StrawberryGraphQLCoreExecutionContext, document, variables)


@pytest.mark.parametrize("value", [None, {"type": "x"}, [], "x"])
def test_values_that_are_not_long_lists_are_graphql_cores(value: Any) -> None:
    variables = {"e": value}
    assert outcome(FastVariablesExecutor, TRACK, variables) == outcome(StrawberryGraphQLCoreExecutionContext, TRACK, variables)
