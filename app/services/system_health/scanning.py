"""Scanning health: how the door scanners of an organization fare over a range, read from its
ticket.scanned (a scan that let someone in) and ticket.scan_failed (one that did not) events.

Definitions (also in the schema and the README): total scans = successful scans + failed
scans in the range; failures = failed scans; failure rate = failures / total scans (0 when
there were none). Per device the same, grouped by properties.deviceId (scans without one
under a null device); its last error is its latest failed scan in the range (by occurredAt,
then eventId). Recent errors are the latest failed scans, newest first.

A failed scan names why (properties.errorType): invalid_code (the code is no ticket of
ours), already_used (the ticket was used before) or network (the scanner could not check).
It names the device, and the ticket (ticketId) and/or what was scanned (code): an invalid
code may resolve to no ticket. orderId, listingId (the ticketed event) and message are
optional. Both scan types are tracked or published like any non-money event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth import Viewer, administered_scope
from app.database import connection
from app.errors import BadInput, NotFound
from app.timebuckets import RangeSpec, TimeRange, resolve_range
from app.vocabulary import SCAN_EVENT_TYPES, TICKET_SCAN_FAILED, TICKET_SCANNED

INVALID_CODE, ALREADY_USED, NETWORK = "invalid_code", "already_used", "network"
ERROR_TYPES = (INVALID_CODE, ALREADY_USED, NETWORK)
ID_MAX_CHARS = 200
MESSAGE_MAX_CHARS = 500
MAX_RECENT = 100
REFUSAL = "scanning health needs an organization admin token"


# --------------------------------------------------------------------------- validation


def _text(properties: Mapping[str, Any], name: str, limit: int, *, required: bool) -> tuple[str, str] | None:
    value = properties.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        return f"properties.{name}", f"properties.{name} must be printable text of 1 to {limit} characters"
    return None


def _check_failed(properties: Mapping[str, Any]) -> tuple[str, str] | None:
    if properties.get("errorType") not in ERROR_TYPES:
        return "properties.errorType", f"properties.errorType must be one of {', '.join(ERROR_TYPES)}"
    if properties.get("ticketId") is None and properties.get("code") is None:
        return "properties.ticketId", f"{TICKET_SCAN_FAILED} needs properties.ticketId or properties.code (what was scanned)"
    checks = (("deviceId", ID_MAX_CHARS, True), ("ticketId", ID_MAX_CHARS, False), ("code", ID_MAX_CHARS, False),
              ("orderId", ID_MAX_CHARS, False), ("listingId", ID_MAX_CHARS, False), ("message", MESSAGE_MAX_CHARS, False))  # fmt: skip
    for name, limit, required in checks:
        if problem := _text(properties, name, limit, required=required):
            return problem
    return None


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """(field, reason) of the first bad scan property, None when they are fine. A successful
    scan keeps the free form it always had; only the listing and code it may name are checked,
    since support shows them."""
    if event_type == TICKET_SCAN_FAILED:
        if not isinstance(properties, Mapping):
            return "properties.errorType", f"{TICKET_SCAN_FAILED} needs properties.errorType, deviceId and ticketId or code"
        return _check_failed(properties)
    if event_type == TICKET_SCANNED and isinstance(properties, Mapping):
        for name in ("listingId", "code"):
            if problem := _text(properties, name, ID_MAX_CHARS, required=False):
                return problem
    return None


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class DeviceScans:
    organization_id: uuid.UUID
    device_id: str | None
    scans: int
    failures: int
    last_error_type: str | None
    last_error_at: datetime | None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.scans if self.scans else 0.0


@dataclass(frozen=True, slots=True)
class ScanError:
    organization_id: uuid.UUID
    event_id: str
    at: datetime
    error_type: str
    device_id: str | None
    ticket_id: str | None
    code: str | None
    order_id: str | None
    listing_id: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class ScanningHealth:
    organization_id: uuid.UUID | None  # None: every organization
    range: TimeRange
    scans: int
    failures: int
    by_error_type: dict[str, int]
    devices: list[DeviceScans]
    recent_errors: list[ScanError]

    @property
    def failure_rate(self) -> float:
        return self.failures / self.scans if self.scans else 0.0


# Each reads the type index (organization, type, occurred_at) over the range's partitions, one
# organization at a time (the lateral join): $1 names one, or NULL for every organization.
_COUNTS = f"""
SELECT o.id AS org, s.device, s.failed, s.error, s.n
FROM organizations o CROSS JOIN LATERAL (
    SELECT properties ->> 'deviceId' AS device, type = '{TICKET_SCAN_FAILED}' AS failed, properties ->> 'errorType' AS error,
           count(*) AS n
    FROM events
    WHERE organization_id = o.id AND type = ANY($2::text[]) AND occurred_at >= $3 AND occurred_at < $4
    GROUP BY 1, 2, 3
) s
WHERE $1::uuid IS NULL OR o.id = $1
"""
_LAST_ERRORS = f"""
SELECT o.id, s.device, s.error, s.at
FROM organizations o CROSS JOIN LATERAL (
    SELECT DISTINCT ON (properties ->> 'deviceId') properties ->> 'deviceId' AS device, properties ->> 'errorType' AS error,
           occurred_at AS at
    FROM events
    WHERE organization_id = o.id AND type = '{TICKET_SCAN_FAILED}' AND occurred_at >= $2 AND occurred_at < $3
    ORDER BY properties ->> 'deviceId', occurred_at DESC, event_id DESC
) s
WHERE $1::uuid IS NULL OR o.id = $1
"""
_RECENT_ERRORS = f"""
SELECT o.id, s.*
FROM organizations o CROSS JOIN LATERAL (
    SELECT event_id, occurred_at, properties ->> 'errorType', properties ->> 'deviceId', properties ->> 'ticketId',
           properties ->> 'code', properties ->> 'orderId', properties ->> 'listingId', properties ->> 'message'
    FROM events
    WHERE organization_id = o.id AND type = '{TICKET_SCAN_FAILED}' AND occurred_at >= $2 AND occurred_at < $3
    ORDER BY occurred_at DESC, event_id DESC
    LIMIT $4
) s
WHERE $1::uuid IS NULL OR o.id = $1
ORDER BY s.occurred_at DESC, s.event_id DESC, o.id
LIMIT $4
"""


def _devices(counts: list[Any], last_errors: dict[tuple[uuid.UUID, str | None], tuple[str, datetime]]) -> list[DeviceScans]:
    """Per organization and device; most failures first, then most scans, then by name."""
    totals: dict[tuple[uuid.UUID, str | None], list[int]] = {}
    for row in counts:
        cell = totals.setdefault((row["org"], row["device"]), [0, 0])
        cell[0] += row["n"]
        cell[1] += row["n"] if row["failed"] else 0
    devices = [DeviceScans(org, device, scans, failures, *last_errors.get((org, device), (None, None)))
               for (org, device), (scans, failures) in totals.items()]  # fmt: skip
    return sorted(devices, key=lambda d: (-d.failures, -d.scans, d.device_id or "", str(d.organization_id)))


async def scanning_health(
    *, viewer: Viewer, organization_id: Any = None, time_range: RangeSpec, recent_limit: int = 20
) -> ScanningHealth:
    """One organization's scanners (organization admins: theirs), or, for a platform admin
    who names none, every organization's together, presets in UTC."""
    org = await administered_scope(viewer, organization_id, refusal=REFUSAL)
    if not 1 <= recent_limit <= MAX_RECENT:
        raise BadInput(f"recentLimit must be between 1 and {MAX_RECENT}", field="recentLimit")
    async with connection() as conn:
        timezone = "UTC" if org is None else await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)
        if timezone is None:
            raise NotFound("organization not found", field="organizationId")
        span = resolve_range(time_range, timezone)
        counts = await conn.fetch(_COUNTS, org, sorted(SCAN_EVENT_TYPES), span.start, span.end)
        last = {(row[0], row[1]): (row[2], row[3]) for row in await conn.fetch(_LAST_ERRORS, org, span.start, span.end)}
        recent = [ScanError(*row) for row in await conn.fetch(_RECENT_ERRORS, org, span.start, span.end, recent_limit)]
    by_error = {kind: sum(r["n"] for r in counts if r["failed"] and r["error"] == kind) for kind in ERROR_TYPES}
    return ScanningHealth(
        organization_id=org, range=span, scans=sum(r["n"] for r in counts), failures=sum(r["n"] for r in counts if r["failed"]),
        by_error_type=by_error, devices=_devices(counts, last), recent_errors=recent,
    )  # fmt: skip
