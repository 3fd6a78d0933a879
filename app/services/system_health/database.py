"""Database health: every API process's pool (as it last reported it, see recorder.py) and
the slowest statements: from `pg_stat_statements` when that extension is installed in this
database, otherwise the slowest GraphQL operations and HTTP routes of our own timings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.auth import Viewer, platform_admin_scope
from app.database import connection
from app.services.system_health.performance import (
    API_REFUSAL,
    PROCESS_FRESH_SECONDS,
    Window,
    merged_timings,
)

SLOWEST_LIMIT = 10
STATEMENT_CHARS = 500


@dataclass(frozen=True)
class ProcessPool:
    process: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    min_size: int
    max_size: int
    size: int
    in_use: int
    idle: int
    waiting: int


@dataclass(frozen=True)
class SlowStatement:
    statement: str
    calls: int
    mean_ms: float
    max_ms: float
    total_ms: float


@dataclass(frozen=True)
class DatabaseHealth:
    processes: list[ProcessPool]
    slowest_source: str  # pg_stat_statements | api_timings
    slowest: list[SlowStatement]


PROCESSES = """
SELECT process, host, pid, started_at, seen_at, pool_min, pool_max, pool_size, pool_in_use, pool_idle, pool_waiting
FROM api_processes WHERE seen_at >= now() - make_interval(secs => $1) ORDER BY host, pid
"""
HAS_PG_STAT_STATEMENTS = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"
SLOWEST_STATEMENTS = """
SELECT left(query, $2) AS statement, calls, mean_exec_time AS mean_ms, max_exec_time AS max_ms,
       total_exec_time AS total_ms
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls > 0
ORDER BY mean_exec_time DESC LIMIT $1
"""


async def database_health(*, viewer: Viewer) -> DatabaseHealth:
    await platform_admin_scope(viewer, None, refusal=API_REFUSAL)
    return await current_database_health()


async def current_database_health() -> DatabaseHealth:
    async with connection() as conn:
        processes = [_process(row) for row in await conn.fetch(PROCESSES, PROCESS_FRESH_SECONDS)]
        if await conn.fetchval(HAS_PG_STAT_STATEMENTS):
            rows = await conn.fetch(SLOWEST_STATEMENTS, SLOWEST_LIMIT, STATEMENT_CHARS)
            slowest = [SlowStatement(r["statement"], r["calls"], r["mean_ms"], r["max_ms"], r["total_ms"]) for r in rows]
            return DatabaseHealth(processes, "pg_stat_statements", slowest)
    return DatabaseHealth(processes, "api_timings", await _slowest_operations())


async def _slowest_operations() -> list[SlowStatement]:
    """Without pg_stat_statements: our own slowest operations and routes of the last day."""
    performance = await merged_timings(window=Window.DAY)
    timings = sorted(performance.operations + performance.routes, key=lambda t: t.average_ms, reverse=True)
    return [SlowStatement(f"{t.kind} {t.name}", t.count, t.average_ms, t.max_ms, t.total_ms)
            for t in timings[:SLOWEST_LIMIT]]  # fmt: skip


def _process(row: object) -> ProcessPool:
    r = row  # asyncpg.Record
    return ProcessPool(r["process"], r["host"], r["pid"], r["started_at"], r["seen_at"], r["pool_min"], r["pool_max"],  # type: ignore[index]
                       r["pool_size"], r["pool_in_use"], r["pool_idle"], r["pool_waiting"])  # type: ignore[index]  # fmt: skip
