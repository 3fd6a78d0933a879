"""Hostile operations: too much data asked for (QUERY_TOO_COMPLEX) and queries that run too
long (QUERY_TIMEOUT). Depth, alias, token, body and batch limits are in test_schema.py and
test_ingestion.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import strawberry
from graphql import get_introspection_query, parse

from app.database import connection, tortoise_config
from app.graphql import ErrorPolicy, schema_extensions
from app.query_cost import MAX_SERIES_BUCKETS, estimate_cost
from schema import build_schema
from tests.support.graphql import error_codes, gql
from tests.support.settings import settings_with
from tests.support.tenants import Tenant, make_tenant

PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
CREATE_COST = """mutation($c: CostCategory!, $cur: String!, $d: Date!) {
  createCost(category: $c, amountMinor: 700, currency: $cur, date: $d) { id } }"""
SERIES_FIELDS = "buckets views uniqueVisitors inquiries conversions engagementSeconds"


def cost(query: str, variables: dict | None = None) -> int:
    return estimate_cost(build_schema()._schema, parse(query), variables=variables or {})


def test_cost_counts_list_sizes_through_nesting():
    assert cost("{ viewer { role } }") == 2
    assert cost("{ profiles(limit: 10) { id name } }") == 10 + 20
    assert cost("query($n: Int!) { profiles(limit: $n) { id } }", {"n": 300}) == 600
    assert cost("{ profiles { id } }") == 200  # the argument's default: 100
    assert cost('{ recentProfileViews(profileId: "x", limit: 200) { eventId country } }') == 600
    aliased = " ".join(f"a{i}: profiles(limit: 500) {{ id name slug }}" for i in range(10))
    assert cost("{ " + aliased + " }") == 10 * 2000
    fragment = "fragment F on Profile { id name } { profiles(limit: 5) { ...F ... on Profile { slug } } }"
    assert cost(fragment) == 5 + 15


def test_time_series_cost_follows_the_bucket_count():
    day = cost(f'{{ profileTimeseries(profileId: "x", range: {{preset: LAST_7_DAYS}}) {{ {SERIES_FIELDS} }} }}')
    assert day == 1 + 6 * 8
    hours = cost(
        '{ profileTimeseries(profileId: "x", granularity: HOUR, range: {from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z"}) { views } }'
    )
    assert hours == 1 + 59 * 24 + 1
    capped = cost(
        '{ profileTimeseries(profileId: "x", granularity: HOUR, range: {from: "2000-01-01T00:00:00Z"}) { views } }'
    )
    assert capped == 1 + MAX_SERIES_BUCKETS
    by_variable = cost(
        "query($r: TimeRangeInput!) { profileTimeseries(profileId: \"x\", range: $r, granularity: HOUR) { views } }",
        {"r": {"preset": "LAST_24_HOURS"}},
    )
    assert by_variable == 1 + 25


def test_lists_the_domain_bounds_cost_their_bound():
    """Money per currency (10), revenue per source (5): a full revenue summary is cheap."""
    summary = cost(
        '{ revenueSummary(range: {preset: LAST_30_DAYS}) { total { amountMinor currency } '
        "change { currency amountMinor percent } "
        "bySource { source revenue { amountMinor currency } previousRevenue { amountMinor currency } } } }"
    )
    assert summary == 1 + (10 + 20) + (10 + 30) + (5 + 5 + 5 * (10 + 20) * 2)
    assert cost("{ organizations { id } }") == 100 + 100  # lists the data sizes still count the default


def test_introspection_is_free():
    assert cost(get_introspection_query()) == 0


async def test_too_costly_operations_are_refused_before_they_run(client, tenant, settings):
    aliased = " ".join(f"a{i}: profiles(limit: 500) {{ id name slug organizationId }}" for i in range(30))
    body = await gql(client, "{ " + aliased + " }", token=tenant.org_admin_token)
    assert body["data"] is None
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["limit"] == settings.query_cost_limit
    assert "too complex" in body["errors"][0]["message"]

    series = " ".join(
        f'a{i}: profileTimeseries(profileId: $p, granularity: HOUR, range: {{preset: LAST_30_DAYS}}) {{ {SERIES_FIELDS} }}'
        for i in range(12)
    )
    body = await gql(client, f"query($p: ID!) {{ {series} }}", {"p": tenant.profile_id}, token=tenant.org_admin_token)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]

    # A dashboard's usual query passes.
    fine = await gql(
        client,
        f"query($p: ID!) {{ profiles(limit: 500) {{ id name }} profileTimeseries(profileId: $p, range: {{preset: LAST_30_DAYS}}) {{ {SERIES_FIELDS} }} recentProfileViews(profileId: $p, limit: 200) {{ eventId country }} }}",
        {"p": tenant.profile_id},
        token=tenant.org_admin_token,
    )
    assert fine.get("errors") is None, fine


MONEY = "amountMinor currency"
STREAMS = "revenueByStream { stream amountMinor }"
CATEGORIES = "costsByCategory { category amountMinor }"
PNL_LINE = f"currency revenue fees grossProfit costs netProfit margin {STREAMS} {CATEGORIES}"
DAILY_REPORTS = {
    "39-day P&L with every breakdown": (
        f"query($r: TimeRangeInput!) {{ pnl(range: $r, granularity: DAY) {{ periods {{ start end lines {{ {PNL_LINE} }} }} "
        f"totals {{ {PNL_LINE} }} }} }}",
        {"from": 39},
    ),
    "30-day revenue series by source": (
        f"query($r: TimeRangeInput!) {{ revenueTimeseries(range: $r, granularity: DAY) {{ points {{ start total {{ {MONEY} }} "
        f"bySource {{ source revenue {{ {MONEY} }} previousRevenue {{ {MONEY} }} }} transactions }} }} }}",
        {"preset": "LAST_30_DAYS"},
    ),
    "30-day P&L by stream": (
        f"query($r: TimeRangeInput!) {{ pnl(range: $r, granularity: DAY) {{ periods {{ start lines {{ currency revenue {STREAMS} }} }} }} }}",
        {"preset": "LAST_30_DAYS"},
    ),
}
SOURCES = ("BOOKING_COMPLETED", "GIFT_PURCHASED", "SUBSCRIPTION_CHARGED", "AFFILIATE_COMMISSION", "ORDER_PAID")
# Money per currency is bounded at 10 currencies, five times the two this organization sells
# in; with the previous period partly empty, the estimate stays under this many times the answer.
DAILY_REPORT_FACTOR = 8


def returned_objects(value: Any) -> int:
    """What a response really holds, counted the way the estimate counts: each field once per
    resolution, each list entry once, and what is inside each entry."""
    if isinstance(value, dict):
        return sum(returned_objects(v) if isinstance(v, list) else 1 + returned_objects(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(returned_objects(v) for v in value)
    return 0


def report_range(spec: dict[str, Any]) -> dict[str, Any]:
    if "from" in spec:
        return {"from": (datetime.now(UTC) - timedelta(days=spec["from"])).isoformat()}
    return spec


async def a_daily_business(client: Any, settings: Any) -> Tenant:
    """An organization in Adelaide selling in two currencies through every source, every day."""
    tenant = await make_tenant(settings, timezone="Australia/Adelaide")
    now = datetime.now(UTC)
    events = [
        {"eventId": f"{day}-{kind}-{currency}", "type": kind, "profileId": tenant.profile_id, "amountMinor": 1000 + day,
         "currency": currency, "occurredAt": (now - timedelta(days=day, hours=1)).isoformat(),
         "properties": {"orderId": f"o-{day}-{kind}-{currency}", "platformFeeMinor": 50}}
        for day in range(40) for kind in SOURCES for currency in ("EUR", "JPY")
    ]  # fmt: skip
    body = await gql(client, PUBLISH, {"e": events}, token=tenant.service_token)
    assert body["data"]["publishDomainEvents"]["accepted"] == len(events), body
    for day in range(0, 40, 3):
        for category in ("MARKETING", "TOOLS", "OTHER"):
            created = await gql(client, CREATE_COST, {"c": category, "cur": "EUR", "d": (now - timedelta(days=day)).date().isoformat()},
                                token=tenant.org_admin_token)  # fmt: skip
            assert created.get("errors") is None, created
    return tenant


async def test_daily_reports_are_priced_by_their_own_bounds(app, client, worker, settings):
    """A list inside each bucket counts its bound times the buckets, never the buckets twice:
    ordinary daily reports pass, and their estimate stays close above what they return."""
    empty = await make_tenant(settings)
    busy = await a_daily_business(client, settings)
    await worker.drain()
    schema = build_schema()._schema
    for name, (query, spec) in DAILY_REPORTS.items():
        variables = {"r": report_range(spec)}
        estimate = estimate_cost(schema, parse(query), variables=variables)
        for tenant in (empty, busy):
            body = await gql(client, query, variables, token=tenant.org_admin_token)
            assert body.get("errors") is None, (name, body)
        real = returned_objects(body["data"])
        print(f"{name}: estimate {estimate}, returned {real}, {estimate / real:.1f}x")
        assert real <= estimate <= DAILY_REPORT_FACTOR * real, (name, estimate, real)
        assert estimate <= settings.query_cost_limit, name


async def test_a_huge_breakdown_is_still_refused(client, tenant):
    """A year of hourly P&L lines with every breakdown is millions of values: refused unrun."""
    query = DAILY_REPORTS["39-day P&L with every breakdown"][0]
    monthly = query.replace("granularity: DAY", "granularity: MONTH")
    year = {"r": report_range({"from": 365})}
    body = await gql(client, monthly, year, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    hourly = query.replace("granularity: DAY", "granularity: HOUR")
    body = await gql(client, hourly, year, token=tenant.org_admin_token)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body


async def test_cost_limit_is_configurable_and_reads_variables(settings):
    schema = build_schema(schema_extensions(settings_with(settings, query_cost_limit=100)))
    query = "query($n: Int!) { profiles(limit: $n) { id } }"
    refused = await schema.execute(query, variable_values={"n": 60})
    assert refused.data is None
    assert refused.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert refused.errors[0].extensions["cost"] == 120
    allowed = await schema.execute("{ __typename }")  # introspection only: nothing to pay for
    assert allowed.errors is None


async def test_api_connections_carry_the_statement_timeout(app, settings):
    async with connection() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == f"{settings.statement_timeout_ms}ms".replace("000ms", "s")


def test_the_timeout_is_for_api_connections_only(settings):
    with_timeout = tortoise_config("postgresql://u@h/db", settings, statement_timeout_ms=250)
    without = tortoise_config("postgresql://u@h/db", settings)
    assert with_timeout["connections"]["default"]["credentials"]["server_settings"]["statement_timeout"] == "250"
    assert "statement_timeout" not in without["connections"]["default"]["credentials"]["server_settings"]


async def test_a_statement_over_the_timeout_is_cancelled(settings, database_url):
    credentials = tortoise_config(database_url, settings, statement_timeout_ms=100)["connections"]["default"]["credentials"]
    conn = await asyncpg.connect(database_url, server_settings=credentials["server_settings"])
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.fetchval("SELECT pg_sleep(2)")
    finally:
        await conn.close()


async def test_a_query_timeout_is_answered_with_its_code_not_masked(app):
    from tortoise import connections

    @strawberry.type
    class Query:
        @strawberry.field
        async def slow_raw(self) -> int:
            async with connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 50")
                return await conn.fetchval("SELECT 1 FROM pg_sleep(1)")

        @strawberry.field
        async def slow_orm(self) -> int:
            client = connections.get("default")
            async with client._in_transaction() as tx:
                await tx.execute_query("SET LOCAL statement_timeout = 50")
                await tx.execute_query("SELECT pg_sleep(1)")
            return 1

    schema = strawberry.Schema(query=Query, extensions=[ErrorPolicy])
    for field in ("slowRaw", "slowOrm"):
        result = await schema.execute(f"{{ {field} }}")
        assert result.errors, field
        error = result.errors[0]
        assert error.extensions["code"] == "QUERY_TIMEOUT", (field, error)
        assert "too long" in error.message
