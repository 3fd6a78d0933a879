"""Service metrics: executions, success and error rates, latency average and p50 / p95 / p99
per service and bucket, error codes ranked, the slowest services.

Definitions (the README's marketplace section states them too):
- An execution is one service.executed event; its bucket is the local period (hour, day,
  ISO week, month of the organization's zone) of its occurredAt. Error rate = failed
  executions / executions; success rate = 1 - error rate (0 for both without executions).
- Latency percentiles come from KLL sketches (`sketches`, rank error RANK_ERROR, ~1.65%):
  closed hours, days and months from the rollups, the open hour and partial-hour edges from
  raw events (`profile_analytics.planner` splits the range so every instant is read once);
  the sketches of a service's buckets merge into its range's sketch, so any range answers.
  The average is exact: the latency sum over the executions.
- Services are ranked by executions (then id); the slowest by p95 (then id); error codes by
  failures (then code); a failure without an errorCode counts under null.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import orjson

from app.auth import Viewer
from app.services.insights.query import insight_connection, periods_of
from app.services.marketplace.scope import MarketplaceRunner, MarketplaceScope, check_filter, check_limit
from app.services.marketplace.sketches import RANK_ERROR, Latencies
from app.services.profile_analytics.planner import Params, Segment, plan_segments, raw_filter, rollup_filter
from app.timebuckets import BucketIndex, Grain, RangeSpec, TimeRange, resolve_range, utcnow
from app.vocabulary import SERVICE_EXECUTED

SERVICES_MAX = 100
ERROR_CODES_MAX = 100
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class ExecutionStats:
    """One service's (or all services') executions over a bucket or the range."""

    executions: int
    errors: int
    success_rate: float
    error_rate: float
    average_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class ServiceSeries:
    service_id: str
    category: str | None  # the one most of its executions carried
    total: ExecutionStats
    points: list[ExecutionStats]


@dataclass(frozen=True, slots=True)
class ErrorCodeCount:
    code: str | None
    errors: int
    services: int  # how many services failed with it


@dataclass(frozen=True, slots=True)
class ServiceMetrics:
    range: TimeRange
    grain: Grain
    starts: list[datetime]
    total: ExecutionStats
    points: list[ExecutionStats]
    services: list[ServiceSeries]
    slowest: list[ServiceSeries]
    error_codes: list[ErrorCodeCount]
    rank_error: float


@dataclass(slots=True)
class _Tally:
    """Executions being summed: counters, the latency sum and a merged sketch."""

    executions: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latencies: Latencies = field(default_factory=Latencies)

    def add(self, other: _Tally) -> None:
        self.executions += other.executions
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.latencies.merge(other.latencies)

    def stats(self) -> ExecutionStats:
        n = self.executions
        p50, p95, p99 = (self.latencies.quantile(q) for q in QUANTILES) if n else (None, None, None)
        return ExecutionStats(
            executions=n, errors=self.errors, success_rate=(n - self.errors) / n if n else 0.0,
            error_rate=self.errors / n if n else 0.0, average_ms=self.latency_sum / n if n else None,
            p50_ms=p50, p95_ms=p95, p99_ms=p99,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Plan:
    span: TimeRange
    grain: Grain
    starts: list[datetime]
    segments: list[Segment]


_ROLLUPS = """
SELECT r.bucket_start AS at, r.service_id, r.category, r.executions, r.errors, r.latency_sum_ms, r.latency_kll,
       r.error_codes::text AS error_codes
FROM service_rollups r
WHERE r.organization_id = $1 AND ({segments}) AND ($2::text IS NULL OR r.service_id = $2)
  AND ($3::text IS NULL OR r.category = $3)
"""
_RAW = f"""
SELECT e.occurred_at AS at, e.properties ->> 'serviceId' AS service_id, COALESCE(e.properties ->> 'category', '') AS category,
       (e.properties ->> 'latencyMs')::float8 AS latency_ms, (e.properties ->> 'success')::boolean AS success,
       e.properties ->> 'errorCode' AS error_code
FROM events e
WHERE e.organization_id = $1 AND e.type = '{SERVICE_EXECUTED}' AND ({{segments}})
  AND ($2::text IS NULL OR e.properties ->> 'serviceId' = $2) AND ($3::text IS NULL OR COALESCE(e.properties ->> 'category', '') = $3)
"""


class ServiceMetricsQuery(MarketplaceRunner[Plan, ServiceMetrics]):
    """Inputs: organization_id, time_range, grain, service_id, category, limit."""

    kind: ClassVar[str] = "marketplace_service_metrics"

    def validate(self, scope: MarketplaceScope) -> None:
        check_filter(self.inputs.get("service_id"), "serviceId")
        check_filter(self.inputs.get("category"), "category")
        check_limit(self.inputs["limit"], SERVICES_MAX)

    def plan(self, scope: MarketplaceScope) -> Plan:
        grain: Grain = self.inputs["grain"]
        span = resolve_range(self.inputs["time_range"], scope.timezone)
        periods = periods_of(span, grain)
        segments = plan_segments(
            span, now=utcnow(), whole_days=grain is not Grain.HOUR, whole_months=grain is Grain.MONTH
        )
        return Plan(span, grain, periods.starts, segments)

    async def fetch(self, scope: MarketplaceScope, plan: Plan) -> tuple[list[Any], list[Any]]:
        filters = (scope.organization_id, self.inputs.get("service_id"), self.inputs.get("category"))
        rollups: list[Any] = []
        raw: list[Any] = []
        async with insight_connection() as conn:
            params = Params(*filters)
            if (condition := rollup_filter(params, plan.segments)) is not None:
                rollups = await conn.fetch(_ROLLUPS.format(segments=condition), *params.values)
            params = Params(*filters)
            if (condition := raw_filter(params, plan.segments)) is not None:
                raw = await conn.fetch(_RAW.format(segments=condition), *params.values)
        return rollups, raw

    def calculate(self, scope: MarketplaceScope, plan: Plan, fetched: tuple[list[Any], list[Any]]) -> ServiceMetrics:
        rollups, raw = fetched
        buckets = BucketIndex(plan.starts)
        cells: dict[tuple[str, int], _Tally] = {}
        categories: dict[str, Counter[str]] = {}
        codes: Counter[str | None] = Counter()
        code_services: dict[str | None, set[str]] = {}
        for row in rollups:
            tally = _cell(cells, categories, row, buckets, row["executions"])
            tally.executions += row["executions"]
            tally.errors += row["errors"]
            tally.latency_sum += row["latency_sum_ms"]
            tally.latencies.add_sketch(row["latency_kll"])
            for code, n in orjson.loads(row["error_codes"]).items():
                _count_code(codes, code_services, code or None, row["service_id"], n)
        for row in raw:
            tally = _cell(cells, categories, row, buckets, 1)
            tally.executions += 1
            tally.latency_sum += row["latency_ms"]
            tally.latencies.add_value(row["latency_ms"])
            if not row["success"]:
                tally.errors += 1
                _count_code(codes, code_services, row["error_code"], row["service_id"], 1)
        return _answer(plan, cells, categories, codes, code_services, self.inputs["limit"])


def _cell(
    cells: dict[tuple[str, int], _Tally], categories: dict[str, Counter[str]], row: Any, buckets: BucketIndex, weight: int
) -> _Tally:
    service = row["service_id"]
    categories.setdefault(service, Counter())[row["category"]] += weight
    index = buckets.find(row["at"])
    return cells.setdefault((service, index if index is not None else 0), _Tally())


def _main_category(counts: Counter[str]) -> str | None:
    """The category most executions carried (ties: the first by name); None when that is none."""
    if not counts:
        return None
    best = min(counts.items(), key=lambda c: (-c[1], c[0]))[0]
    return best or None


def _count_code(
    codes: Counter[str | None], services: dict[str | None, set[str]], code: str | None, service: str, n: int
) -> None:
    codes[code] += n
    services.setdefault(code, set()).add(service)


def _answer(
    plan: Plan,
    cells: dict[tuple[str, int], _Tally],
    categories: dict[str, Counter[str]],
    codes: Counter[str | None],
    code_services: dict[str | None, set[str]],
    limit: int,
) -> ServiceMetrics:
    """Per service: its buckets' tallies and their merge; overall: every service's merge."""
    width = len(plan.starts)
    per_service: dict[str, list[_Tally]] = {s: [_Tally() for _ in range(width)] for s in categories}
    for (service, index), tally in cells.items():
        per_service[service][index] = tally
    overall_points = [_Tally() for _ in range(width)]
    overall = _Tally()
    series: list[ServiceSeries] = []
    for service, points in per_service.items():
        total = _Tally()
        for index, tally in enumerate(points):
            total.add(tally)
            overall_points[index].add(tally)
        overall.add(total)
        series.append(ServiceSeries(service, _main_category(categories[service]), total.stats(), [p.stats() for p in points]))
    by_executions = sorted(series, key=lambda s: (-s.total.executions, s.service_id))
    slowest = sorted(
        (s for s in series if s.total.p95_ms is not None), key=lambda s: (-(s.total.p95_ms or 0.0), s.service_id)
    )
    ranked_codes = sorted(codes.items(), key=lambda c: (-c[1], c[0] is None, c[0] or ""))
    return ServiceMetrics(
        range=plan.span, grain=plan.grain, starts=plan.starts, total=overall.stats(),
        points=[p.stats() for p in overall_points], services=by_executions[:limit], slowest=slowest[:limit],
        error_codes=[ErrorCodeCount(c, n, len(code_services[c])) for c, n in ranked_codes[:ERROR_CODES_MAX]],
        rank_error=RANK_ERROR,
    )  # fmt: skip


async def service_metrics(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, grain: Grain = Grain.DAY,
    service_id: str | None = None, category: str | None = None, limit: int = 20,
) -> ServiceMetrics:  # fmt: skip
    return await ServiceMetricsQuery(
        viewer=viewer, organization_id=organization_id, time_range=time_range, grain=grain,
        service_id=service_id, category=category, limit=limit,
    ).run()  # fmt: skip
