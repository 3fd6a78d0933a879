"""Service metrics end to end: executions published through the API, rolled up by the real
worker, read back through GraphQL and compared with plain Python over what was sent, and
with PostgreSQL's exact percentile_cont within the KLL sketches' rank error."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.database import connection
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.marketplace_events import PUBLISH, Execution, executions, publish

STATS = "executions errors successRate errorRate averageMs p50Ms p95Ms p99Ms"
POINTS = "executions errors errorRates averageMs p50Ms p95Ms p99Ms"
SERVICE_METRICS = f"""
query($org: ID, $range: TimeRangeInput!, $g: Granularity, $s: String, $c: String) {{
  serviceMetrics(organizationId: $org, range: $range, granularity: $g, serviceId: $s, category: $c) {{
    range {{ from to }} starts percentileRankError
    total {{ {STATS} }} points {{ {POINTS} }}
    services {{ serviceId category total {{ {STATS} }} points {{ {POINTS} }} }}
    slowestServices {{ serviceId total {{ p95Ms }} }}
    errorCodes {{ code errors services }}
  }}
}}"""
EXACT = """
SELECT percentile_cont($4::float8[]) WITHIN GROUP (ORDER BY (properties ->> 'latencyMs')::float8) AS bounds
FROM events WHERE organization_id = $1 AND type = 'service.executed' AND occurred_at >= $2 AND occurred_at < $3
  AND ($5::text IS NULL OR properties ->> 'serviceId' = $5)
"""


async def exact_bounds(org: Any, start: datetime, end: datetime, q: float, eps: float, service: str | None = None) -> tuple[float, float]:
    """The exact latencies at ranks q - eps and q + eps: a sketch's answer for q must lie between."""
    async with connection() as conn:
        low, high = await conn.fetchval(EXACT, org, start, end, [max(0.0, q - eps), min(1.0, q + eps)], service)
    return low, high


def within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9


async def test_service_metrics_match_the_executions_sent(client, worker, tenant):
    now = datetime.now(UTC)
    market = executions(random.Random(18), now, count=4000, days=3)
    await publish(client, tenant.service_token, market.events)
    await worker.drain()
    async with connection() as conn:
        rolled = await conn.fetchval("SELECT sum(executions) FROM service_rollups WHERE organization_id = $1 AND grain = 'hour'", tenant.organization.id)
    assert rolled == len(market.executions)
    start = (now - timedelta(days=4)).replace(minute=17, second=0, microsecond=0)  # mid-hour: raw edges too
    end = now + timedelta(minutes=1)
    data = await gql_data(client, SERVICE_METRICS, {"org": tenant.org_id, "range": {"from": start.isoformat(), "to": end.isoformat()}, "g": "DAY"}, tenant.viewer_token)
    found = data["serviceMetrics"]
    eps = found["percentileRankError"]
    assert 0.016 < eps < 0.017
    sent = market.executions
    total = found["total"]
    assert total["executions"] == len(sent)
    assert total["errors"] == sum(not e.success for e in sent)
    assert total["errorRate"] == pytest.approx(total["errors"] / len(sent))
    assert total["averageMs"] == pytest.approx(sum(e.latency for e in sent) / len(sent))
    for q, key in ((0.5, "p50Ms"), (0.95, "p95Ms"), (0.99, "p99Ms")):
        assert within(total[key], await exact_bounds(tenant.organization.id, start, end, q, eps)), (key, total[key])
    by_service: dict[str, list[Execution]] = {}
    for e in sent:
        by_service.setdefault(e.service, []).append(e)
    ranked = sorted(by_service, key=lambda s: (-len(by_service[s]), s))
    assert [s["serviceId"] for s in found["services"]] == ranked
    for row in found["services"]:
        mine = by_service[row["serviceId"]]
        assert row["category"] == mine[0].category
        assert (row["total"]["executions"], row["total"]["errors"]) == (len(mine), sum(not e.success for e in mine))
        assert sum(row["points"]["executions"]) == len(mine)
        p95 = await exact_bounds(tenant.organization.id, start, end, 0.95, eps, row["serviceId"])
        assert within(row["total"]["p95Ms"], p95), row
    slowest = [s["serviceId"] for s in found["slowestServices"]]
    assert slowest == sorted(slowest, key=lambda s: -next(r["total"]["p95Ms"] for r in found["services"] if r["serviceId"] == s))
    assert slowest[0] == "transcribe"
    codes = Counter(e.code for e in sent if not e.success)
    assert [(c["code"], c["errors"]) for c in found["errorCodes"]] == sorted(codes.items(), key=lambda c: (-c[1], c[0] is None, c[0] or ""))
    # every day of the series against the executions of that UTC day
    for i, day in enumerate(found["starts"]):
        lo = max(datetime.fromisoformat(day), start)
        hi = min(datetime.fromisoformat(found["starts"][i + 1]) if i + 1 < len(found["starts"]) else end, end)
        inside = [e for e in sent if lo <= e.at < hi]
        assert found["points"]["executions"][i] == len(inside)
        if inside:
            assert found["points"]["averageMs"][i] == pytest.approx(sum(e.latency for e in inside) / len(inside))
            assert within(found["points"]["p95Ms"][i], await exact_bounds(tenant.organization.id, lo, hi, 0.95, eps))


async def test_one_service_and_one_category_hourly(client, worker, tenant):
    now = datetime.now(UTC)
    market = executions(random.Random(7), now, count=600, days=0.5)
    await publish(client, tenant.service_token, market.events)
    await worker.drain()
    variables = {"org": tenant.org_id, "range": {"preset": "LAST_24_HOURS"}, "g": "HOUR"}
    one = (await gql_data(client, SERVICE_METRICS, {**variables, "s": "ocr"}, tenant.org_admin_token))["serviceMetrics"]
    assert [s["serviceId"] for s in one["services"]] == ["ocr"]
    assert one["total"]["executions"] == sum(e.service == "ocr" for e in market.executions)
    assert len(one["starts"]) == 24 and sum(one["points"]["executions"]) == one["total"]["executions"]
    images = (await gql_data(client, SERVICE_METRICS, {**variables, "c": "images"}, tenant.org_admin_token))["serviceMetrics"]
    assert {s["serviceId"] for s in images["services"]} == {"ocr", "resize"}
    assert images["total"]["executions"] == sum(e.category == "images" for e in market.executions)


async def test_the_same_answer_before_and_after_a_rollup_exists(client, worker, tenant):
    """Executions the worker has not processed yet count from raw events in the open hour;
    once rolled up, closed hours give the same figures."""
    now = datetime.now(UTC)
    market = executions(random.Random(3), now, count=50, days=0.01)
    await publish(client, tenant.service_token, market.events)
    variables = {"org": tenant.org_id, "range": {"from": (now - timedelta(minutes=10)).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}}
    before = (await gql_data(client, SERVICE_METRICS, variables, tenant.viewer_token))["serviceMetrics"]["total"]
    await worker.drain()
    after = (await gql_data(client, SERVICE_METRICS, {**variables, "g": "HOUR"}, tenant.viewer_token))["serviceMetrics"]["total"]
    inside = [e for e in market.executions if e.at >= now - timedelta(minutes=10)]
    assert before["executions"] == after["executions"] == len(inside)
    assert before["averageMs"] == pytest.approx(after["averageMs"]) == pytest.approx(sum(e.latency for e in inside) / len(inside))
    assert (before["p50Ms"], before["p95Ms"], before["p99Ms"]) == (after["p50Ms"], after["p95Ms"], after["p99Ms"])


async def test_executions_are_validated_naming_the_field(client, tenant):
    good = {"eventId": "ok-1", "type": "SERVICE_EXECUTED", "properties": {"serviceId": "a", "latencyMs": 12.5, "success": True}}
    bad = [
        ({"serviceId": "a", "success": True}, "properties.latencyMs"),
        ({"serviceId": "a", "latencyMs": -1, "success": True}, "properties.latencyMs"),
        ({"serviceId": "a", "latencyMs": "12", "success": True}, "properties.latencyMs"),
        ({"latencyMs": 5, "success": True}, "properties.serviceId"),
        ({"serviceId": "a", "latencyMs": 5}, "properties.success"),
        ({"serviceId": "a", "latencyMs": 5, "success": True, "errorCode": "X"}, "properties.errorCode"),
        ({"serviceId": "", "latencyMs": 5, "success": False}, "properties.serviceId"),
    ]
    events = [good] + [{"eventId": f"bad-{i}", "type": "SERVICE_EXECUTED", "properties": p} for i, (p, _) in enumerate(bad)]
    events += [
        {"eventId": "s-bad", "type": "MARKETPLACE_SEARCHED", "properties": {"query": "logo", "resultsCount": -2}},
        {"eventId": "v-bad", "type": "MARKETPLACE_VIEWED", "properties": {}},
        {"eventId": "c-bad", "type": "MARKETPLACE_CONVERTED", "amountMinor": 100, "currency": "EUR", "properties": {"serviceId": "a"}},
        {"eventId": "t-bad", "type": "MARKETPLACE_CONVERTED", "amountMinor": 100, "currency": "EUR",
         "properties": {"serviceId": "a", "orderId": "o", "takeRateBps": 20000}},
        {"eventId": "i-bad", "type": "SUBSCRIPTION_CHARGED", "profileId": tenant.profile_id, "amountMinor": 100, "currency": "EUR",
         "properties": {"interval": "fortnight"}},
    ]  # fmt: skip
    body = await gql(client, PUBLISH, {"e": events}, token=tenant.service_token)
    result = body["data"]["publishDomainEvents"]
    assert result["accepted"] == 1
    fields = [r["field"] for r in result["rejected"]]
    assert fields == [f for _, f in bad] + [
        "properties.resultsCount", "properties.serviceId", "properties.orderId", "properties.takeRateBps", "properties.interval"
    ]


async def test_who_may_read_service_metrics(client, tenant, other_tenant):
    variables = {"org": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}}
    assert error_codes(await gql(client, SERVICE_METRICS, variables, token=tenant.provider_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, SERVICE_METRICS, variables, token=other_tenant.org_admin_token)) == ["NOT_FOUND"]
    found = await gql_data(client, SERVICE_METRICS, {**variables, "org": None}, tenant.viewer_token)
    assert found["serviceMetrics"]["total"]["executions"] == 0
    bad = await gql(client, SERVICE_METRICS, {**variables, "s": " "}, token=tenant.viewer_token)
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "serviceId"


async def test_days_follow_the_organizations_time_zone_and_repeats_count_once(client, worker, settings):
    """Kolkata is UTC+05:30: its days start at 18:30 UTC, and so do the rollups' buckets."""
    from zoneinfo import ZoneInfo

    from tests.support.tenants import make_tenant

    tenant = await make_tenant(settings, timezone="Asia/Kolkata")
    now = datetime.now(UTC)
    market = executions(random.Random(11), now, count=900, days=5)
    await publish(client, tenant.service_token, market.events)
    body = await gql(client, PUBLISH, {"e": market.events[:50]}, token=tenant.service_token)
    assert body["data"]["publishDomainEvents"]["duplicates"] == 50 and body["data"]["publishDomainEvents"]["accepted"] == 0
    await worker.drain()
    found = (await gql_data(client, SERVICE_METRICS, {"org": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "g": "DAY"},
                            tenant.viewer_token))["serviceMetrics"]  # fmt: skip
    zone = ZoneInfo("Asia/Kolkata")
    per_day = Counter(e.at.astimezone(zone).date() for e in market.executions)
    starts = [datetime.fromisoformat(s) for s in found["starts"]]
    assert all(s.astimezone(zone).hour == 0 and s.astimezone(zone).minute == 0 for s in starts)
    assert found["points"]["executions"] == [per_day.get(s.astimezone(zone).date(), 0) for s in starts]
    assert found["total"]["executions"] == len(market.executions)
