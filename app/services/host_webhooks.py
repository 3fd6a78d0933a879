"""The host platform's webhooks that failed: it reports each failed delivery of its own as a
`webhook.failed` domain event (published with a service token), and the report counts them
by endpoint, by status code and by error, with the most recent ones.

Properties of webhook.failed, checked at ingestion naming the bad field: `endpoint` (required,
the URL or name called, 1..500 characters), and optional `eventType` (what the webhook carried,
1..128), `statusCode` (the receiver's HTTP status, 100..599), `error` (1..500), `attempt` and
`maxAttempts` (1..1000, attempt at most maxAttempts).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth import Viewer, administered_scope
from app.database import connection
from app.errors import BadInput
from app.services.failed_payments import resolved_range
from app.timebuckets import RangeSpec, TimeRange
from app.vocabulary import WEBHOOK_FAILED

TEXT_LIMITS = {"endpoint": 500, "eventType": 128, "error": 500}
MAX_ATTEMPTS = 1000
MAX_RECENT = 100


def _bad_text(properties: Mapping[str, Any], name: str, *, required: bool) -> tuple[str, str] | None:
    value = properties.get(name)
    if value is None and not required:
        return None
    limit = TEXT_LIMITS[name]
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return f"properties.{name}", f"properties.{name} must be text of 1 to {limit} characters"
    return None


def _bad_int(properties: Mapping[str, Any], name: str, lowest: int, highest: int) -> tuple[str, str] | None:
    value = properties.get(name)
    if value is not None and (type(value) is not int or not lowest <= value <= highest):
        return f"properties.{name}", f"properties.{name} must be an integer from {lowest} to {highest}"
    return None


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """(field, reason) of the first bad webhook.failed property, None when they are fine."""
    if event_type != WEBHOOK_FAILED:
        return None
    if not isinstance(properties, Mapping):
        return "properties.endpoint", f"{WEBHOOK_FAILED} needs properties.endpoint"
    problem = (
        _bad_text(properties, "endpoint", required=True)
        or _bad_text(properties, "eventType", required=False)
        or _bad_text(properties, "error", required=False)
        or _bad_int(properties, "statusCode", 100, 599)
        or _bad_int(properties, "attempt", 1, MAX_ATTEMPTS)
        or _bad_int(properties, "maxAttempts", 1, MAX_ATTEMPTS)
    )
    attempt, most = properties.get("attempt"), properties.get("maxAttempts")
    if problem is None and type(attempt) is int and type(most) is int and attempt > most:
        problem = "properties.attempt", "properties.attempt must not exceed properties.maxAttempts"
    return problem


@dataclass(frozen=True, slots=True)
class HostWebhookFailure:
    organization_id: uuid.UUID
    event_id: str
    occurred_at: datetime
    endpoint: str
    event_type: str | None
    status_code: int | None
    error: str | None
    attempt: int | None
    max_attempts: int | None


@dataclass(frozen=True, slots=True)
class HostWebhookFailures:
    organization_id: uuid.UUID | None
    time_range: TimeRange
    count: int
    by_endpoint: list[tuple[str, int]]  # most failures first
    by_status_code: list[tuple[int | None, int]]  # None: no HTTP answer (a timeout, a refused connection)
    by_error: list[tuple[str, int]]  # failures that reported an error text
    recent: list[HostWebhookFailure]  # newest first


# One index range per organization (events_type_time), whichever organizations are read.
FAILURES = f"""
SELECT e.organization_id, e.event_id, e.occurred_at, e.properties ->> 'endpoint' AS endpoint, e.properties ->> 'eventType',
       (e.properties ->> 'statusCode')::int AS status_code, e.properties ->> 'error' AS error,
       (e.properties ->> 'attempt')::int, (e.properties ->> 'maxAttempts')::int
FROM organizations o
CROSS JOIN LATERAL (
    SELECT organization_id, event_id, occurred_at, properties FROM events
    WHERE organization_id = o.id AND type = '{WEBHOOK_FAILED}' AND occurred_at >= $2 AND occurred_at < $3
) e
WHERE ($1::uuid IS NULL OR o.id = $1)
"""
RECENT = f"{FAILURES} ORDER BY e.occurred_at DESC, e.organization_id DESC, e.event_id DESC LIMIT $4"
# Counted in one pass: per endpoint, per status code, per error, and in all (the empty grouping set).
COUNTS = f"""
SELECT GROUPING(f.endpoint) = 0, GROUPING(f.status_code) = 0, GROUPING(f.error) = 0, f.endpoint, f.status_code, f.error,
       count(*)
FROM ({FAILURES}) f
GROUP BY GROUPING SETS ((f.endpoint), (f.status_code), (f.error), ())
"""


async def host_webhook_failures(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, recent: int = 20
) -> HostWebhookFailures:
    """Platform admins every organization's (or the one they name), organization admins their own."""
    org = await administered_scope(viewer, organization_id, refusal="the host platform's webhooks need an organization admin token")
    if not 0 <= recent <= MAX_RECENT:
        raise BadInput(f"recent must be between 0 and {MAX_RECENT}", field="recent")
    async with connection() as conn:
        span = await resolved_range(conn, org, time_range)
        counts = await conn.fetch(COUNTS, org, span.start, span.end)
        newest = await conn.fetch(RECENT, org, span.start, span.end, recent)
    total = sum(row[6] for row in counts if not (row[0] or row[1] or row[2]))
    return HostWebhookFailures(
        organization_id=org, time_range=span, count=total,
        by_endpoint=_ranked((row[3], row[6]) for row in counts if row[0]),
        by_status_code=_ranked((row[4], row[6]) for row in counts if row[1]),
        by_error=_ranked((row[5], row[6]) for row in counts if row[2] and row[5] is not None),
        recent=[HostWebhookFailure(*row) for row in newest],
    )  # fmt: skip


def _ranked(counts: Any) -> list[tuple[Any, int]]:
    """Most frequent first, then by value (no status code last)."""
    return sorted(counts, key=lambda item: (-item[1], item[0] is None, str(item[0])))
