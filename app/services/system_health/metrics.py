"""The Prometheus exposition of the system health figures (GET /metrics), with the standard
client library: API performance per operation and route for each window, merged across
every API process from the shared table, and every live API process's database pool.

Collected on each scrape from PostgreSQL, so whichever process answers, the figures are the
installation's. The endpoint needs `Authorization: Bearer <PULSEGRAPH_METRICS_TOKEN>`; with
no token configured it is refused to everyone.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.services.system_health.database import DatabaseHealth, current_database_health
from app.services.system_health.performance import ApiPerformance, Window, merged_timings

WINDOW_LABELS = {Window.HOUR: "1h", Window.DAY: "24h", Window.WEEK: "7d"}
QUANTILES = (0.5, 0.95, 0.99)
TIMING_LABELS = ["kind", "name", "window"]
POOL_LABELS = ["process", "host", "pid"]


class HealthCollector(Collector):
    """Figures read before the scrape is rendered (collectors are synchronous)."""

    def __init__(self, performance: dict[str, ApiPerformance], database: DatabaseHealth) -> None:
        self.performance = performance
        self.database = database

    def collect(self) -> Iterator[Metric]:
        yield from self._timings()
        yield from self._pools()

    def _timings(self) -> Iterator[Metric]:
        requests = GaugeMetricFamily("pulsegraph_api_requests", "Finished GraphQL operations or HTTP requests in the window.", labels=TIMING_LABELS)
        errors = GaugeMetricFamily("pulsegraph_api_errors", "Of those, answers with a GraphQL error or an HTTP status of 500 or more.", labels=TIMING_LABELS)
        slow = GaugeMetricFamily("pulsegraph_api_slow_requests", "Of those, the ones that took 1 second or more.", labels=TIMING_LABELS)
        average = GaugeMetricFamily("pulsegraph_api_duration_average_seconds", "Average duration in the window.", labels=TIMING_LABELS)
        quantiles = GaugeMetricFamily(
            "pulsegraph_api_duration_seconds", "Nearest-rank percentile of durations in the window (log-spaced buckets, within 9%).",
            labels=[*TIMING_LABELS, "quantile"],
        )  # fmt: skip
        for window, performance in self.performance.items():
            for timing in performance.operations + performance.routes:
                labels = [timing.kind, timing.name, window]
                requests.add_metric(labels, timing.count)
                errors.add_metric(labels, timing.errors)
                slow.add_metric(labels, timing.slow)
                average.add_metric(labels, timing.average_ms / 1000.0)
                for quantile in QUANTILES:
                    quantiles.add_metric([*labels, str(quantile)], timing.percentile(quantile) / 1000.0)
        yield from (requests, errors, slow, average, quantiles)

    def _pools(self) -> Iterator[Metric]:
        families = {
            "size": GaugeMetricFamily("pulsegraph_db_pool_size", "Open connections of the process's pool.", labels=POOL_LABELS),
            "max_size": GaugeMetricFamily("pulsegraph_db_pool_max_size", "The most connections the pool may open.", labels=POOL_LABELS),
            "in_use": GaugeMetricFamily("pulsegraph_db_pool_in_use", "Connections lent out.", labels=POOL_LABELS),
            "idle": GaugeMetricFamily("pulsegraph_db_pool_idle", "Open connections waiting to be lent.", labels=POOL_LABELS),
            "waiting": GaugeMetricFamily("pulsegraph_db_pool_waiting", "Callers waiting for a connection.", labels=POOL_LABELS),
        }
        for pool in self.database.processes:
            labels = [pool.process, pool.host, str(pool.pid)]
            for attribute, family in families.items():
                family.add_metric(labels, getattr(pool, attribute))
        yield from families.values()


async def metrics_text() -> bytes:
    performance = {label: await merged_timings(window=window) for window, label in WINDOW_LABELS.items()}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(performance, await current_database_health()))
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    token: str | None = request.app.state.settings.metrics_token
    if not token:
        return JSONResponse({"error": "metrics are off: set PULSEGRAPH_METRICS_TOKEN to serve them"}, status_code=403)
    offered = request.headers.get("authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return JSONResponse({"error": "a bearer token is needed"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(await metrics_text(), media_type=CONTENT_TYPE_LATEST)
