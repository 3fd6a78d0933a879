"""System health: API timings recorded by several processes into the shared table and merged
by the readers, compared with a from-scratch computation over the recorded durations; the
GraphQL fields and their access rules; the Prometheus endpoint parsed with the client
library's own parser."""

from __future__ import annotations

import dataclasses
import math
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.database import connection
from app.services.system_health.histogram import RELATIVE_ERROR, percentile_ms
from app.services.system_health.performance import Timing, Window, merged_timings
from app.services.system_health.recorder import SLOW_MS, ApiTimingRecorder, recorder
from tests.support.graphql import error_codes, gql, gql_data

PERFORMANCE = """query($w: HealthWindow!, $org: ID) { apiPerformance(window: $w, organizationId: $org) {
  window from to operations { name count errors errorRate slow averageMs p50Ms p95Ms p99Ms maxMs }
  routes { name count errors errorRate slow averageMs p50Ms p95Ms p99Ms maxMs } } }"""
DATABASE = """{ databaseHealth { pools { process host pid size minSize maxSize inUse idle waiting seenAt }
  slowestSource slowest { statement calls meanMs maxMs totalMs } } }"""


def exact_percentile(durations: list[float], quantile: float) -> float:
    """Nearest rank over the sorted durations: the definition the buckets approximate."""
    ordered = sorted(durations)
    return ordered[max(1, math.ceil(quantile * len(ordered))) - 1]


def generated_durations(seed: int, n: int) -> list[float]:
    """Log-normal around 20 ms with a tail past a second, like an API's."""
    rng = random.Random(seed)
    return [min(rng.lognormvariate(math.log(20.0), 1.4), 600_000.0) for _ in range(n)]


def enabled_recorder() -> ApiTimingRecorder:
    own = ApiTimingRecorder()
    own.enabled = True
    return own


def timing_named(timings: list[Timing], name: str) -> Timing:
    return next(t for t in timings if t.name == name)


def assert_close_to_exact(timing: Timing, durations: list[float], errors: int) -> None:
    assert timing.count == len(durations)
    assert timing.errors == errors
    assert timing.slow == sum(d >= SLOW_MS for d in durations)
    assert timing.average_ms == pytest.approx(sum(durations) / len(durations), rel=1e-9)
    assert timing.max_ms == pytest.approx(max(durations))
    for quantile in (0.5, 0.95, 0.99):
        exact = exact_percentile(durations, quantile)
        assert abs(timing.percentile(quantile) / exact - 1) <= RELATIVE_ERROR + 1e-9, (quantile, exact)


def test_bucket_percentiles_are_within_the_stated_error_of_the_exact_ones() -> None:
    durations = generated_durations(7, 20_000)
    own = enabled_recorder()
    for duration in durations:
        own.record("graphql", "Exact", duration, error=False)
    (cell,) = own._cells.values()
    for quantile in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999):
        exact = exact_percentile(durations, quantile)
        assert abs(percentile_ms(cell.buckets, quantile) / exact - 1) <= RELATIVE_ERROR + 1e-9, quantile


async def test_two_processes_flushing_to_the_table_merge_into_the_figures_of_all_durations(app: Any) -> None:
    name = f"Merged{uuid.uuid4().hex[:8]}"
    first, second = enabled_recorder(), enabled_recorder()
    durations = generated_durations(11, 3_000)
    rng = random.Random(3)
    failed = 0
    for index, duration in enumerate(durations):
        error = rng.random() < 0.05
        failed += error
        (first if index % 3 else second).record("graphql", name, duration, error=error)
        if index == 1_000:  # a flush in the middle: the later one overwrites, it does not add twice
            await first.flush()
            await second.flush()
    await first.flush()
    await second.flush()
    await first.flush()  # nothing new: nothing written again
    performance = await merged_timings(window=Window.HOUR)
    assert_close_to_exact(timing_named(performance.operations, name), durations, failed)
    async with connection() as conn:
        processes = await conn.fetchval("SELECT count(DISTINCT process) FROM api_timings WHERE name = $1", name)
    assert processes == 2


async def test_an_organization_filter_keeps_its_operations_and_leaves_routes_out(app: Any) -> None:
    name = f"Tenanted{uuid.uuid4().hex[:8]}"
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    own = enabled_recorder()
    own.record("graphql", name, 5.0, error=False, organization_id=mine)
    own.record("graphql", name, 50.0, error=True, organization_id=mine)
    own.record("graphql", name, 500.0, error=False, organization_id=theirs)
    own.record("http", "POST /somewhere", 1.0, error=False)
    await own.flush()
    narrowed = await merged_timings(window=Window.HOUR, organization_id=mine)
    assert_close_to_exact(timing_named(narrowed.operations, name), [5.0, 50.0], 1)
    assert narrowed.routes == []
    everyone = await merged_timings(window=Window.HOUR)
    assert timing_named(everyone.operations, name).count == 3


async def test_api_performance_shows_the_operations_and_routes_the_api_served(client: Any, tenant: Any) -> None:
    name = f"Counted{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        await gql(client, f"query {name} {{ __typename }}", token=tenant.viewer_token)
    await gql(client, f"query {name} {{ apiPerformance(window: HOUR) {{ from }} }}", token=tenant.org_admin_token)  # refused: an error
    await recorder().flush()
    data = (await gql_data(client, PERFORMANCE, {"w": "DAY", "org": None}, tenant.admin_token))["apiPerformance"]
    operation = next(o for o in data["operations"] if o["name"] == name)
    assert (operation["count"], operation["errors"]) == (4, 1)
    assert operation["errorRate"] == pytest.approx(0.25)
    assert 0 < operation["p50Ms"] <= operation["p99Ms"] and operation["averageMs"] <= operation["maxMs"]
    route = next(r for r in data["routes"] if r["name"] == "POST /graphql")
    assert route["count"] >= 4
    narrowed = (await gql_data(client, PERFORMANCE, {"w": "HOUR", "org": tenant.org_id}, tenant.admin_token))["apiPerformance"]
    assert next(o for o in narrowed["operations"] if o["name"] == name)["count"] == 4
    assert narrowed["routes"] == []


async def test_system_health_is_for_platform_admins_only(client: Any, tenant: Any) -> None:
    for token in (tenant.org_admin_token, tenant.viewer_token, tenant.provider_token, tenant.service_token, None):
        for query, variables in ((PERFORMANCE, {"w": "HOUR", "org": None}), (DATABASE, {})):
            body = await gql(client, query, variables, token=token)
            assert body.get("data") is None, body
            assert error_codes(body)[0] in {"FORBIDDEN", "UNAUTHENTICATED"}, body


async def test_an_unknown_organization_is_not_found(client: Any, tenant: Any) -> None:
    body = await gql(client, PERFORMANCE, {"w": "HOUR", "org": str(uuid.uuid4())}, token=tenant.admin_token)
    assert error_codes(body) == ["NOT_FOUND"]


async def test_database_health_lists_this_process_pool_and_the_slowest_statements(client: Any, tenant: Any) -> None:
    await recorder().flush()
    data = (await gql_data(client, DATABASE, {}, tenant.admin_token))["databaseHealth"]
    pool = next(p for p in data["pools"] if p["process"] == recorder().process)
    assert pool["maxSize"] >= pool["size"] >= 1 and pool["size"] == pool["inUse"] + pool["idle"]
    assert pool["inUse"] >= 1  # the flush held a connection while it wrote this row
    async with connection() as conn:
        installed = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')")
    assert data["slowestSource"] == ("PG_STAT_STATEMENTS" if installed else "API_TIMINGS")
    means = [s["meanMs"] for s in data["slowest"]]
    assert means == sorted(means, reverse=True) and 0 < len(means) <= 10


@pytest.fixture
def metrics_token(app: Any) -> Iterator[str]:
    """The running app with a metrics token configured, for the length of one test."""
    configured = app.state.settings
    app.state.settings = dataclasses.replace(configured, metrics_token="scrape-secret")
    yield "scrape-secret"
    app.state.settings = configured


async def test_metrics_are_refused_without_a_configured_token(client: Any) -> None:
    response = await client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403


async def test_metrics_are_refused_without_the_token(client: Any, metrics_token: str) -> None:
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_metrics_expose_the_merged_figures_and_the_pools(client: Any, metrics_token: str) -> None:
    name = f"Scraped{uuid.uuid4().hex[:8]}"
    first, second = enabled_recorder(), enabled_recorder()
    durations = generated_durations(5, 400)
    for index, duration in enumerate(durations):
        (first if index % 2 else second).record("graphql", name, duration, error=index % 10 == 0)
    await first.flush()
    await second.flush()
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text) for sample in family.samples
    }  # fmt: skip
    labels = {"kind": "graphql", "name": name, "window": "1h"}

    def value(metric: str, **extra: str) -> float:
        return samples[(metric, tuple(sorted({**labels, **extra}.items())))]

    assert value("pulsegraph_api_requests") == len(durations)
    assert value("pulsegraph_api_errors") == 40
    assert value("pulsegraph_api_slow_requests") == sum(d >= SLOW_MS for d in durations)
    assert value("pulsegraph_api_duration_average_seconds") == pytest.approx(sum(durations) / len(durations) / 1000)
    exact_p95 = exact_percentile(durations, 0.95) / 1000
    assert abs(value("pulsegraph_api_duration_seconds", quantile="0.95") / exact_p95 - 1) <= RELATIVE_ERROR + 1e-9
    assert value("pulsegraph_api_requests", window="7d") == len(durations)
    pools = {dict(labels)["process"]: v for (metric, labels), v in samples.items() if metric == "pulsegraph_db_pool_max_size"}
    assert {first.process, second.process} <= set(pools)


PLATFORM_OPERATIONS = """query { failedPaymentStats { windows { window failed failureRate } byStatus { status count } }
  webhookHealth(everyOrganization: true) { failedLast24h pending pendingRetries dead } }"""
PUBLISH_FAILURES = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted } }"""


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }  # fmt: skip


async def test_metrics_show_the_platform_failed_payments_and_deliveries(client: Any, tenant: Any, metrics_token: str) -> None:
    """The scrape says what a platform admin's failedPaymentStats and webhookHealth say, and
    moves when payments fail."""
    headers = {"Authorization": f"Bearer {metrics_token}"}
    before = scraped((await client.get("/metrics", headers=headers)).text)
    now = datetime.now(UTC)
    failures = [{"eventId": f"metrics-pf-{uuid.uuid4().hex[:8]}-{n}", "type": "PAYMENT_FAILED", "userId": f"m-{n}",
                 "occurredAt": (now - timedelta(hours=n)).isoformat(), "properties": {"reason": "card_declined"}}
                for n in range(3)]  # fmt: skip
    assert (await gql_data(client, PUBLISH_FAILURES, {"e": failures}, tenant.service_token))["publishDomainEvents"]["accepted"] == 3
    after = scraped((await client.get("/metrics", headers=headers)).text)
    answer = await gql_data(client, PLATFORM_OPERATIONS, {}, tenant.admin_token)
    windows = {w["window"]: w for w in answer["failedPaymentStats"]["windows"]}
    for window, label in (("LAST_24_HOURS", "24h"), ("LAST_7_DAYS", "7d"), ("LAST_30_DAYS", "30d")):
        key = ("pulsegraph_failed_payments", (("window", label),))
        assert after[key] - before[key] == 3
        assert after[key] == windows[window]["failed"]
        rate = windows[window]["failureRate"]
        assert after.get(("pulsegraph_payment_failure_rate", (("window", label),))) == (rate if rate is None else pytest.approx(rate))
    statuses = {s["status"].lower(): s["count"] for s in answer["failedPaymentStats"]["byStatus"]}
    assert {status: after[("pulsegraph_failed_payments_by_status", (("status", status),))] for status in statuses} == statuses
    health = answer["webhookHealth"]
    assert after[("pulsegraph_notification_deliveries_dead", ())] == health["dead"]
    assert after[("pulsegraph_notification_deliveries_pending_retries", ())] == health["pendingRetries"]
    assert after[("pulsegraph_notification_deliveries_failed_24h", ())] == health["failedLast24h"]


async def test_the_live_figures_follow_every_process_flush(app: Any, settings: Any, tenant: Any) -> None:
    """Driven in-process as a websocket operation would be: the figures at once, then after
    another process has written its timings, with that process's operations in them."""
    import asyncio
    from types import SimpleNamespace

    from app.auth import viewer_from_token
    from app.graphql import Context, schema_extensions
    from schema import build_schema

    schema = build_schema(schema_extensions(settings))
    name = f"Live{uuid.uuid4().hex[:8]}"
    context = Context(request=SimpleNamespace(app=app), response=None, viewer=viewer_from_token(tenant.admin_token))
    stream = await schema.subscribe(
        "subscription { apiPerformanceUpdates(window: HOUR) { operations { name count } } }", context_value=context
    )
    try:
        first = await asyncio.wait_for(stream.__anext__(), 15)
        assert name not in {o["name"] for o in first.data["apiPerformanceUpdates"]["operations"]}
        other = enabled_recorder()
        for duration in (3.0, 30.0, 300.0):
            other.record("graphql", name, duration, error=False)

        async def flush_until_seen() -> dict[str, Any]:
            next_result = asyncio.ensure_future(stream.__anext__())
            while True:  # until the subscription listens: each flush writes something and announces it
                other.record("graphql", f"{name}-filler", 1.0, error=False)
                await other.flush(app.state.bus)
                done, _ = await asyncio.wait({next_result}, timeout=0.5)
                if done:
                    return next_result.result().data

        data = await asyncio.wait_for(flush_until_seen(), 15)
        assert {o["name"]: o["count"] for o in data["apiPerformanceUpdates"]["operations"]}[name] == 3
    finally:
        await stream.aclose()
