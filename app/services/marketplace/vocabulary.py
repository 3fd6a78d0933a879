"""The marketplace's events and the properties each must carry, checked at ingestion.

    service.executed       serviceId, latencyMs (0..86,400,000, may have decimals), success
                           (boolean); optional executionId, errorCode (failed executions
                           only), category
    marketplace.searched   query (1..512 characters), resultsCount (integer >= 0); optional category
    marketplace.viewed     serviceId; optional category
    marketplace.converted  serviceId, orderId, amountMinor + currency; optional category,
                           creatorId, takeRateBps (the ledger's contract checks those two)

`check_properties` names the first bad field (`properties.latencyMs`), so the worker and the
reports can trust what they read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.vocabulary import MARKETPLACE_CONVERTED, MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED, SERVICE_EXECUTED

ID_MAX_CHARS = 128
QUERY_MAX_CHARS = 512
LATENCY_MAX_MS = 86_400_000
RESULTS_MAX = 2**31 - 1

# Per event type: required text ids, optional text ids.
_REQUIRED_TEXT = {
    SERVICE_EXECUTED: ("serviceId",),
    MARKETPLACE_VIEWED: ("serviceId",),
    MARKETPLACE_CONVERTED: ("serviceId", "orderId"),
    MARKETPLACE_SEARCHED: (),
}
_OPTIONAL_TEXT = {
    SERVICE_EXECUTED: ("executionId", "errorCode", "category"),
    MARKETPLACE_VIEWED: ("category",),
    MARKETPLACE_CONVERTED: ("category",),
    MARKETPLACE_SEARCHED: ("category",),
}

Problem = tuple[str, str]


def check_properties(event_type: str, properties: Any) -> Problem | None:
    """(field, reason) of the first missing or bad property of a marketplace event; None when fine."""
    if event_type not in _REQUIRED_TEXT:
        return None
    props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    for name in _REQUIRED_TEXT[event_type]:
        if props.get(name) is None:
            return f"properties.{name}", f"{event_type} needs properties.{name}"
    for name in (*_REQUIRED_TEXT[event_type], *_OPTIONAL_TEXT[event_type]):
        if (problem := _text_problem(props, name, ID_MAX_CHARS)) is not None:
            return problem
    if event_type == SERVICE_EXECUTED:
        return _execution_problem(props)
    if event_type == MARKETPLACE_SEARCHED:
        return _search_problem(props)
    return None


def _text_problem(props: Mapping[str, Any], name: str, most: int) -> Problem | None:
    value = props.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > most or not value.isprintable():
        return f"properties.{name}", f"properties.{name} must be printable text of 1 to {most} characters"
    return None


def _execution_problem(props: Mapping[str, Any]) -> Problem | None:
    latency = props.get("latencyMs")
    if latency is None:
        return "properties.latencyMs", f"{SERVICE_EXECUTED} needs properties.latencyMs"
    if type(latency) not in (int, float) or not math.isfinite(latency) or not 0 <= latency <= LATENCY_MAX_MS:
        return "properties.latencyMs", f"properties.latencyMs must be a number of milliseconds from 0 to {LATENCY_MAX_MS}"
    success = props.get("success")
    if not isinstance(success, bool):
        return "properties.success", f"{SERVICE_EXECUTED} needs properties.success, true or false"
    if success and props.get("errorCode") is not None:
        return "properties.errorCode", "properties.errorCode is for failed executions (success false)"
    return None


def _search_problem(props: Mapping[str, Any]) -> Problem | None:
    if props.get("query") is None:
        return "properties.query", f"{MARKETPLACE_SEARCHED} needs properties.query"
    if (problem := _text_problem(props, "query", QUERY_MAX_CHARS)) is not None:
        return problem
    results = props.get("resultsCount")
    if type(results) is not int or not 0 <= results <= RESULTS_MAX:
        return "properties.resultsCount", f"{MARKETPLACE_SEARCHED} needs properties.resultsCount, an integer >= 0"
    return None


def normalized_query(query: str) -> str:
    """How searches are grouped: trimmed, lowercased, inner blanks folded to one space (the
    only blank a validated query can hold is the ASCII space)."""
    return " ".join(query.lower().split())
