"""Hostile operations: too much data asked for (QUERY_TOO_COMPLEX) and queries that run too
long (QUERY_TIMEOUT). Depth, alias, token, body and batch limits are in test_schema.py and
test_ingestion.py."""

from __future__ import annotations

import asyncpg
import pytest
import strawberry
from graphql import get_introspection_query, parse

from app.database import connection, tortoise_config
from app.graphql import ErrorPolicy, schema_extensions
from app.query_cost import MAX_SERIES_BUCKETS, estimate_cost
from schema import build_schema
from tests.conftest import error_codes, gql, settings_with

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
        f'{{ profileTimeseries(profileId: "x", granularity: HOUR, range: {{from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z"}}) {{ views }} }}'
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
