"""API performance over a window, merged across every API process and minute from
`api_timings` (see recorder.py), and the API processes with their database pools.

Definitions (also in the schema and the README): count = finished queries and mutations
(GraphQL, by operation name; anonymous ones by their root fields) or HTTP requests (by
method and route template); error rate = errors / count, where an error is a GraphQL answer
with any error, or an HTTP answer of 500 or more; slow = took 1 s or more; average = total
time / count (exact); p50 / p95 / p99 are nearest-rank percentiles read from log-spaced
buckets, within about 9% of the exact value (histogram.RELATIVE_ERROR). A window is the last
hour, day or week up to now, starting at the whole minute.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from app.auth import Viewer, platform_admin_scope
from app.database import connection
from app.services.system_health.histogram import BUCKETS, percentile_ms
from app.timebuckets import utcnow

API_REFUSAL = "API and database figures are installation-wide: they need a platform admin token"
PROCESS_FRESH_SECONDS = 60  # a process that has not reported for this long is gone


class Window(Enum):
    HOUR = timedelta(hours=1)
    DAY = timedelta(days=1)
    WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Timing:
    kind: str
    name: str
    count: int
    errors: int
    slow: int
    total_ms: float
    max_ms: float
    buckets: tuple[int, ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def average_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0

    def percentile(self, quantile: float) -> float:
        return percentile_ms(self.buckets, quantile) or 0.0


@dataclass(frozen=True)
class ApiPerformance:
    start: datetime
    end: datetime
    operations: list[Timing]
    routes: list[Timing]


MERGED_TIMINGS = """
WITH cells AS (
    SELECT kind, name, count, errors, slow, total_ms, max_ms, buckets FROM api_timings
    WHERE minute >= $1 AND ($2::uuid IS NULL OR organization_id = $2)
), totals AS (
    SELECT kind, name, sum(count)::bigint AS count, sum(errors)::bigint AS errors, sum(slow)::bigint AS slow,
           sum(total_ms) AS total_ms, max(max_ms) AS max_ms
    FROM cells GROUP BY kind, name
), histograms AS (
    SELECT kind, name, array_agg(i::int) AS indexes, array_agg(n) AS counts FROM (
        SELECT kind, name, i, sum(b)::bigint AS n FROM cells, unnest(buckets) WITH ORDINALITY AS u(b, i)
        WHERE b <> 0 GROUP BY kind, name, i
    ) per_bucket GROUP BY kind, name
)
SELECT t.kind, t.name, t.count, t.errors, t.slow, t.total_ms, t.max_ms, h.indexes, h.counts
FROM totals t JOIN histograms h USING (kind, name)
ORDER BY t.kind, t.count DESC, t.name
"""


async def api_performance(*, viewer: Viewer, window: Window, organization_id: str | None = None) -> ApiPerformance:
    """Platform admins only: the figures are the installation's; `organization_id` narrows
    GraphQL operations to those of that organization's credentials (routes have none)."""
    organization = await platform_admin_scope(viewer, organization_id, refusal=API_REFUSAL)
    return await merged_timings(window=window, organization_id=organization)


async def merged_timings(*, window: Window, organization_id: uuid.UUID | None = None,
                         now: datetime | None = None) -> ApiPerformance:  # fmt: skip
    end = now or utcnow()
    start = (end - window.value).replace(second=0, microsecond=0)
    async with connection() as conn:
        rows = await conn.fetch(MERGED_TIMINGS, start, organization_id)
    timings = [_timing(row) for row in rows]
    return ApiPerformance(
        start=start, end=end, operations=[t for t in timings if t.kind == "graphql"],
        routes=[t for t in timings if t.kind == "http" and organization_id is None],
    )  # fmt: skip


def _timing(row: object) -> Timing:
    """Only the buckets holding durations are read (most of a histogram is zeros)."""
    dense = [0] * BUCKETS
    for index, count in zip(row["indexes"], row["counts"], strict=True):  # type: ignore[index]
        dense[index - 1] = count  # ORDINALITY counts from 1
    buckets = tuple(dense)
    return Timing(kind=row["kind"], name=row["name"], count=row["count"], errors=row["errors"], slow=row["slow"],  # type: ignore[index]
                  total_ms=row["total_ms"], max_ms=row["max_ms"], buckets=buckets)  # type: ignore[index]  # fmt: skip
