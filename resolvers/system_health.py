"""System health: API performance (queries and a live subscription) and database health.

The live subscription follows the channel every API process announces its flushes on
(app/vocabulary.py API_TIMINGS_CHANNEL) and answers each announcement with the figures read
again from the shared table, so it shows every process's requests, not just its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.errors import SlowConsumer
from app.eventbus import SubscriberDropped
from app.services.system_health import database, performance, scanning
from app.vocabulary import API_TIMINGS_CHANNEL
from resolvers.common import RangeArg, app_state, guarded, optional_id, to_range_spec, to_resolved_range, viewer_of
from schema.support import ScanErrorType
from schema.system_health import (
    ApiPerformance,
    ApiTiming,
    DatabaseHealth,
    DatabasePool,
    DeviceScanning,
    HealthWindow,
    ScanError,
    ScanErrorCount,
    ScanningHealth,
    SlowestSource,
    SlowStatement,
)

WindowArg = Annotated[HealthWindow, strawberry.argument(description="The last hour, day or week.")]
OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Only GraphQL operations of this organization's credentials (HTTP routes are then left out)."),
]


def api_timing_of(timing: performance.Timing) -> ApiTiming:
    return ApiTiming(
        name=timing.name, count=timing.count, errors=timing.errors, error_rate=timing.error_rate, slow=timing.slow,
        average_ms=timing.average_ms, p50_ms=timing.percentile(0.5), p95_ms=timing.percentile(0.95),
        p99_ms=timing.percentile(0.99), max_ms=timing.max_ms,
    )  # fmt: skip


def api_performance_of(figures: performance.ApiPerformance, window: HealthWindow) -> ApiPerformance:
    return ApiPerformance(
        window=window, from_=figures.start, to=figures.end,
        operations=[api_timing_of(t) for t in figures.operations], routes=[api_timing_of(t) for t in figures.routes],
    )  # fmt: skip


def database_health_of(health: database.DatabaseHealth) -> DatabaseHealth:
    return DatabaseHealth(
        pools=[DatabasePool(
            process=p.process, host=p.host, pid=p.pid, started_at=p.started_at, seen_at=p.seen_at, min_size=p.min_size,
            max_size=p.max_size, size=p.size, in_use=p.in_use, idle=p.idle, waiting=p.waiting,
        ) for p in health.processes],
        slowest_source=SlowestSource(health.slowest_source),
        slowest=[SlowStatement(statement=s.statement, calls=s.calls, mean_ms=s.mean_ms, max_ms=s.max_ms, total_ms=s.total_ms)
                 for s in health.slowest],
    )  # fmt: skip


async def api_performance(info: Info, window: WindowArg, organization_id: OrganizationArg = None) -> ApiPerformance:
    figures = await performance.api_performance(
        viewer=viewer_of(info), window=performance.Window[window.name], organization_id=organization_id
    )
    return api_performance_of(figures, window)


async def database_health(info: Info) -> DatabaseHealth:
    return database_health_of(await database.database_health(viewer=viewer_of(info)))


async def api_performance_updates(
    info: Info, window: WindowArg, organization_id: OrganizationArg = None
) -> AsyncGenerator[ApiPerformance, None]:
    """The figures at once, then again each time an API process has written its timings."""
    figures = await performance.api_performance(
        viewer=viewer_of(info), window=performance.Window[window.name], organization_id=organization_id
    )
    yield api_performance_of(figures, window)
    organization = uuid.UUID(str(organization_id)) if organization_id is not None else None
    async with app_state(info).bus.subscribe(API_TIMINGS_CHANNEL) as subscription:
        try:
            async for _ in subscription:
                figures = await performance.merged_timings(window=performance.Window[window.name], organization_id=organization)
                yield api_performance_of(figures, window)
        except SubscriberDropped as exc:
            raise SlowConsumer(f"{exc}; subscribe again to continue") from exc


def scanning_health_of(health: scanning.ScanningHealth) -> ScanningHealth:
    return ScanningHealth(
        organization_id=optional_id(health.organization_id), range=to_resolved_range(health.range), scans=health.scans,
        failures=health.failures, failure_rate=health.failure_rate,
        by_error_type=[ScanErrorCount(error_type=ScanErrorType(kind), count=n) for kind, n in health.by_error_type.items()],
        devices=[DeviceScanning(
            organization_id=strawberry.ID(str(d.organization_id)), device_id=d.device_id, scans=d.scans, failures=d.failures, failure_rate=d.failure_rate,
            last_error_type=ScanErrorType(d.last_error_type) if d.last_error_type in scanning.ERROR_TYPES else None,
            last_error_at=d.last_error_at,
        ) for d in health.devices],
        recent_errors=[ScanError(
            organization_id=strawberry.ID(str(e.organization_id)), event_id=e.event_id, at=e.at, error_type=ScanErrorType(e.error_type), device_id=e.device_id, ticket_id=e.ticket_id,
            code=e.code, order_id=e.order_id, listing_id=e.listing_id, message=e.message,
        ) for e in health.recent_errors],
    )  # fmt: skip


async def scanning_health(
    info: Info, range_: RangeArg,
    organization_id: Annotated[strawberry.ID | None, strawberry.argument(description="The organization (org admins: theirs; platform admins: the one named, else every organization).")] = None,
    recent_limit: Annotated[int, strawberry.argument(description="At most this many recent errors (1..100).")] = 20,
) -> ScanningHealth:  # fmt: skip
    health = await scanning.scanning_health(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(range_), recent_limit=recent_limit
    )
    return scanning_health_of(health)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """System health, merged into the root by schema.root."""

    api_performance: ApiPerformance = guarded(
        Access.PLATFORM_ADMINS, api_performance,
        "GraphQL operations and HTTP routes over the window: count, error rate, slow ones, average and p50/p95/p99, "
        "merged across every API process.",
    )  # fmt: skip
    database_health: DatabaseHealth = guarded(
        Access.PLATFORM_ADMINS, database_health,
        "Every API process's database pool (size, in use, idle, waiting) and the slowest statements.",
    )  # fmt: skip
    scanning_health: ScanningHealth = guarded(
        Access.ORG_ADMINS, scanning_health,
        "Door scanning over a range: scans, failures and failure rate, failures by error type, per device, and the latest"
        " failed scans (platform admins name the organization; org admins see their own).",
    )  # fmt: skip


@strawberry.type
class Subscription:
    """System health's live updates, merged into the root by schema.root."""

    api_performance_updates: ApiPerformance = guarded(
        Access.PLATFORM_ADMINS, api_performance_updates,
        "API performance over the window, pushed at once and then each time an API process writes its timings "
        "(every few seconds while requests arrive).", subscription=True,
    )  # fmt: skip
