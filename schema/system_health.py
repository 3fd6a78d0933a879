"""System health types: API performance merged across API processes, and the database."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import ResolvedRange
from schema.support import ScanErrorType


@strawberry.enum(description="How far back API figures reach, up to now (from the whole minute).")
class HealthWindow(Enum):
    HOUR = strawberry.enum_value("HOUR", description="The last hour.")
    DAY = strawberry.enum_value("DAY", description="The last 24 hours.")
    WEEK = strawberry.enum_value("WEEK", description="The last 7 days.")


@strawberry.type(description="One GraphQL operation or HTTP route over the window, every API process together.")
class ApiTiming:
    name: str = strawberry.field(description="The operation name (an anonymous operation: its root fields in braces), or the method and route template.")
    count: int = strawberry.field(description="Finished queries and mutations, or HTTP requests.")
    errors: int = strawberry.field(description="Of those, GraphQL answers with any error, or HTTP answers of status 500 or more.")
    error_rate: float = strawberry.field(description="errors / count (0..1).")
    slow: int = strawberry.field(description="Of those, the ones that took 1 second or more.")
    average_ms: float = strawberry.field(description="Mean duration in milliseconds (exact).")
    p50_ms: float = strawberry.field(description="Median duration in milliseconds (nearest rank, from log-spaced buckets: within about 9%).")
    p95_ms: float = strawberry.field(description="95th percentile duration in milliseconds (as p50Ms).")
    p99_ms: float = strawberry.field(description="99th percentile duration in milliseconds (as p50Ms).")
    max_ms: float = strawberry.field(description="Longest duration in milliseconds (exact).")


@strawberry.type(description="API performance over a window: GraphQL operations and HTTP routes, merged across every API process.")
class ApiPerformance:
    window: HealthWindow = strawberry.field(description="The window asked for.")
    from_: datetime = strawberry.field(name="from", description="Start of the window (UTC, a whole minute).")
    to: datetime = strawberry.field(description="End of the window: now (UTC).")
    operations: list[ApiTiming] = strawberry.field(description="GraphQL queries and mutations by operation name, most frequent first (subscriptions are not timed).")
    routes: list[ApiTiming] = strawberry.field(description="HTTP requests by method and route, most frequent first; empty when narrowed to an organization.")


@strawberry.type(description="One API process's database connection pool, as it last reported it (every few seconds).")
class DatabasePool:
    process: str = strawberry.field(description="The process: host, pid and a random suffix.")
    host: str = strawberry.field(description="The host it runs on.")
    pid: int = strawberry.field(description="Its process id.")
    started_at: datetime = strawberry.field(description="When it started.")
    seen_at: datetime = strawberry.field(description="When it last reported.")
    min_size: int = strawberry.field(description="Connections the pool keeps open at least.")
    max_size: int = strawberry.field(description="Connections the pool may open at most.")
    size: int = strawberry.field(description="Connections open.")
    in_use: int = strawberry.field(description="Connections lent out.")
    idle: int = strawberry.field(description="Open connections waiting to be lent.")
    waiting: int = strawberry.field(description="Callers waiting for a connection.")


@strawberry.enum(description="Where the slowest statements come from.")
class SlowestSource(Enum):
    PG_STAT_STATEMENTS = strawberry.enum_value("pg_stat_statements", description="PostgreSQL's pg_stat_statements extension, installed in this database.")
    API_TIMINGS = strawberry.enum_value("api_timings", description="Without the extension: the slowest GraphQL operations and HTTP routes of the last 24 hours.")


@strawberry.type(description="A statement (or, without pg_stat_statements, an operation or route) by its mean duration.")
class SlowStatement:
    statement: str = strawberry.field(description="The normalized statement (first 500 characters), or `graphql <operation>` / `http <route>`.")
    calls: int = strawberry.field(description="Times it ran.")
    mean_ms: float = strawberry.field(description="Mean duration in milliseconds.")
    max_ms: float = strawberry.field(description="Longest duration in milliseconds.")
    total_ms: float = strawberry.field(description="Total time in milliseconds.")


@strawberry.type(description="The database as the API sees it: every live API process's pool and the slowest statements.")
class DatabaseHealth:
    pools: list[DatabasePool] = strawberry.field(description="API processes that reported in the last minute.")
    slowest_source: SlowestSource = strawberry.field(description="Where `slowest` comes from.")
    slowest: list[SlowStatement] = strawberry.field(description="Up to 10, slowest mean first.")


@strawberry.type(description="Failed scans of one kind over the range.")
class ScanErrorCount:
    error_type: ScanErrorType = strawberry.field(description="Why they failed.")
    count: int = strawberry.field(description="How many failed so.")


@strawberry.type(description="One scanning device over the range.")
class DeviceScanning:
    organization_id: strawberry.ID = strawberry.field(description="The device's organization.")
    device_id: str | None = strawberry.field(description="properties.deviceId of its scans (null: scans that named none).")
    scans: int = strawberry.field(description="Its scans, successful and failed.")
    failures: int = strawberry.field(description="Of those, the failed ones (ticket.scan_failed).")
    failure_rate: float = strawberry.field(description="failures / scans (0..1).")
    last_error_type: ScanErrorType | None = strawberry.field(description="Why its latest failed scan in the range failed (null: none failed).")
    last_error_at: datetime | None = strawberry.field(description="When its latest failed scan in the range happened.")


@strawberry.type(description="One failed scan (a ticket.scan_failed event).")
class ScanError:
    organization_id: strawberry.ID = strawberry.field(description="The organization scanned for.")
    event_id: str = strawberry.field(description="The ticket.scan_failed event.")
    at: datetime = strawberry.field(description="When the scan failed.")
    error_type: ScanErrorType = strawberry.field(description="Why it failed.")
    device_id: str | None = strawberry.field(description="The scanning device.")
    ticket_id: str | None = strawberry.field(description="The ticket, when the scan resolved one.")
    code: str | None = strawberry.field(description="What the scanner read, if it said.")
    order_id: str | None = strawberry.field(description="The ticket's order, if it said.")
    listing_id: str | None = strawberry.field(description="The event scanned for (properties.listingId), if it said.")
    message: str | None = strawberry.field(description="The scanner's message, if any.")


@strawberry.type(description="How an organization's door scanners (or every organization's) fared over a range, from ticket.scanned and ticket.scan_failed events.")
class ScanningHealth:
    organization_id: strawberry.ID | None = strawberry.field(description="The organization (null: every organization, for a platform admin who named none).")
    range: ResolvedRange = strawberry.field(description="The range covered.")
    scans: int = strawberry.field(description="Every scan in the range: successful (ticket.scanned) and failed (ticket.scan_failed).")
    failures: int = strawberry.field(description="Of those, the failed ones.")
    failure_rate: float = strawberry.field(description="failures / scans (0..1; 0 without scans).")
    by_error_type: list[ScanErrorCount] = strawberry.field(description="Failures by why they failed, every kind listed (0 when none).")
    devices: list[DeviceScanning] = strawberry.field(description="Per organization and scanning device: most failures first, then most scans.")
    recent_errors: list[ScanError] = strawberry.field(description="The latest failed scans in the range, newest first (at most recentLimit).")
