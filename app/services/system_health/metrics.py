"""The Prometheus exposition of the system health figures (GET /metrics), with the standard
client library: API performance per operation and route for each window, merged across
every API process from the shared table, every live API process's database pool, and the
installation's failed payments and notification deliveries (every organization together).

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

from app.services import failed_payments
from app.services.failed_payments import FailedPaymentStats
from app.services.notifications import deliveries
from app.services.notifications.deliveries import WebhookHealth
from app.services.system_health.database import DatabaseHealth, current_database_health
from app.services.system_health.performance import ApiPerformance, Window, merged_timings

WINDOW_LABELS = {Window.HOUR: "1h", Window.DAY: "24h", Window.WEEK: "7d"}
QUANTILES = (0.5, 0.95, 0.99)
TIMING_LABELS = ["kind", "name", "window"]
POOL_LABELS = ["process", "host", "pid"]


class HealthCollector(Collector):
    """Figures read before the scrape is rendered (collectors are synchronous)."""

    def __init__(
        self, performance: dict[str, ApiPerformance], database: DatabaseHealth, payments: FailedPaymentStats,
        deliveries: WebhookHealth,
    ) -> None:  # fmt: skip
        self.performance = performance
        self.database = database
        self.payments = payments
        self.deliveries = deliveries

    def collect(self) -> Iterator[Metric]:
        yield from self._timings()
        yield from self._pools()
        yield from self._payments()
        yield from self._deliveries()

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


    def _payments(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily("pulsegraph_failed_payments", "payment.failed events in the window.", labels=["window"])
        rate = GaugeMetricFamily(
            "pulsegraph_payment_failure_rate", "Failed / (failed + successful) payments in the window (absent: none).",
            labels=["window"],
        )  # fmt: skip
        for figures in self.payments.windows:
            label = PAYMENT_WINDOW_LABELS[figures.window]
            failed.add_metric([label], figures.failed)
            if figures.failure_rate is not None:
                rate.add_metric([label], figures.failure_rate)
        by_status = GaugeMetricFamily(
            "pulsegraph_failed_payments_by_status", "Failed payments of the last 30 days by admin status.", labels=["status"]
        )
        for status, count in self.payments.by_status:
            by_status.add_metric([status], count)
        yield from (failed, rate, by_status)

    def _deliveries(self) -> Iterator[Metric]:
        health = self.deliveries
        figures = {
            "pulsegraph_notification_deliveries_failed_24h": ("Deliveries with a failed attempt in the last 24 hours.", health.failed_last_24h),
            "pulsegraph_notification_deliveries_delivered_24h": ("Deliveries delivered in the last 24 hours.", health.delivered_last_24h),
            "pulsegraph_notification_deliveries_pending": ("Deliveries not delivered yet.", health.pending),
            "pulsegraph_notification_deliveries_pending_retries": ("Pending deliveries after a failed attempt.", health.pending_retries),
            "pulsegraph_notification_deliveries_dead": ("Deliveries that used up their attempts.", health.dead),
        }  # fmt: skip
        for name, (description, value) in figures.items():
            family = GaugeMetricFamily(name, description)
            family.add_metric([], value)
            yield family


PAYMENT_WINDOW_LABELS = {"last_24_hours": "24h", "last_7_days": "7d", "last_30_days": "30d"}


async def metrics_text() -> bytes:
    performance = {label: await merged_timings(window=window) for window, label in WINDOW_LABELS.items()}
    registry = CollectorRegistry(auto_describe=False)
    collector = HealthCollector(
        performance, await current_database_health(), await failed_payments.stats_of(None),
        await deliveries.health_of(None, True),
    )  # fmt: skip
    registry.register(collector)
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    token: str | None = request.app.state.settings.metrics_token
    if not token:
        return JSONResponse({"error": "metrics are off: set PULSEGRAPH_METRICS_TOKEN to serve them"}, status_code=403)
    offered = request.headers.get("authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return JSONResponse({"error": "a bearer token is needed"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(await metrics_text(), media_type=CONTENT_TYPE_LATEST)
