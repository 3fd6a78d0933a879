"""`rebuild_rollups` (and `pulsegraph rollups rebuild`) recomputes exactly what the worker built.

Events go in through the ingestion service, the worker drains them (in several batches, so
sketches are merged incrementally), then the organization's rollups are rebuilt from
`profile_events` in one pass: every counter, referrer and revenue row must be identical,
and every sketch must give the same estimate (the same registers, built in another order).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from app.database import connection
from app.services.profile_analytics.rebuild import rebuild_rollups
from app.services.profile_analytics.sketches import Uniques
from tests.support.profile_traffic import generate, pending, send
from tests.support.tenants import make_tenant


async def snapshot(org_id: uuid.UUID) -> dict[str, Any]:
    async with connection() as conn:
        rollups = await conn.fetch(
            "SELECT profile_id, grain, bucket_start, views, inquiries, conversions, engagement_ms, favorites, shares, clicks,"
            " visitors_hll, inquirers_hll FROM profile_rollups WHERE organization_id = $1",
            org_id,
        )
        referrers = await conn.fetch(
            "SELECT profile_id, grain, bucket_start, referrer, views FROM profile_referrer_rollups"
            " WHERE organization_id = $1",
            org_id,
        )
        revenue = await conn.fetch(
            "SELECT profile_id, grain, bucket_start, source, currency, amount_minor, transactions"
            " FROM profile_revenue_rollups WHERE organization_id = $1",
            org_id,
        )

    def estimate(data: bytes | None) -> int | None:
        if data is None:
            return None
        uniques = Uniques()
        uniques.add_sketch(data)
        return uniques.estimate()

    return {
        "rollups": {
            (r["profile_id"], r["grain"], r["bucket_start"]): (
                r["views"], r["inquiries"], r["conversions"], r["engagement_ms"], r["favorites"], r["shares"], r["clicks"],
                estimate(r["visitors_hll"]), estimate(r["inquirers_hll"]),
            )  # fmt: skip
            for r in rollups
        },
        "referrers": {tuple(r.values())[:4]: r["views"] for r in referrers},
        "revenue": {tuple(r.values())[:5]: (r["amount_minor"], r["transactions"]) for r in revenue},
    }


def print_differences(built: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    for part in built:
        a, b = built[part], rebuilt[part]
        differ = [(k, a[k], b[k]) for k in set(a) & set(b) if a[k] != b[k]]
        print(f"{part}: {len(set(a) - set(b))} only built, {len(set(b) - set(a))} only rebuilt, {len(differ)} differ")
        print(differ[:5])


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "Asia/Kolkata"])
async def test_rebuild_equals_what_the_worker_built(app, settings, worker, timezone):
    tenant = await make_tenant(settings, timezone=timezone)
    other = await make_tenant(settings)
    now = datetime.now(UTC)
    # Enough visitors for the busiest day's sketch to leave the exact (list/set) modes.
    await send(app, settings, tenant, generate(tenant, now=now, count=9000, days=2, visitors=8000, seed=11))
    await send(app, settings, other, generate(other, now=now, count=300, days=5, visitors=50, seed=12))
    await worker.drain()
    assert await pending(tenant) == 0
    built = await snapshot(tenant.organization.id)
    untouched = await snapshot(other.organization.id)
    assert built["rollups"] and built["referrers"] and built["revenue"]
    assert max(v[7] or 0 for v in built["rollups"].values()) > 2000  # a dense sketch was compared too

    stats = await rebuild_rollups(tenant.organization.id)

    rebuilt = await snapshot(tenant.organization.id)
    if rebuilt != built:
        print_differences(built, rebuilt)
    assert rebuilt == built
    assert stats.hour_rows + stats.day_rows + stats.month_rows == len(built["rollups"])
    assert {grain for _, grain, _ in built["rollups"]} == {"hour", "day", "month"}
    assert stats.referrer_rows == len(built["referrers"]) and stats.revenue_rows == len(built["revenue"])
    assert await snapshot(other.organization.id) == untouched  # --org leaves other tenants alone


async def test_full_rebuild_equals_what_the_worker_built_and_keeps_the_indexes(app, settings, worker):
    """A rebuild of every organization loads the truncated tables without their indexes and
    builds them again: the same rows, the same index definitions, and the keys still unique."""
    tenant = await make_tenant(settings, timezone="Australia/Lord_Howe")  # a 30-minute DST shift
    now = datetime.now(UTC)
    await send(app, settings, tenant, generate(tenant, now=now, count=2500, days=40, visitors=900, seed=31))
    await worker.drain()
    built = await snapshot(tenant.organization.id)
    indexes = await rollup_indexes()

    stats = await rebuild_rollups()

    assert stats.organization_id is None and stats.hour_rows and stats.referrer_rows and stats.revenue_rows
    assert await snapshot(tenant.organization.id) == built
    assert await rollup_indexes() == indexes
    async with connection() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO profile_rollups (organization_id, profile_id, grain, bucket_start)"
                " SELECT organization_id, profile_id, grain, bucket_start FROM profile_rollups LIMIT 1"
            )


@pytest.mark.parametrize(("query", "views"), [("REBUILD_REFERRERS", "count(*) AS views"), ("REBUILD_HOURS", " AS views,")])
async def test_a_failed_rebuild_raises_the_query_error_and_keeps_the_rollups(
    app, settings, worker, monkeypatch, query, views
):
    """The hour rows and the referrer rows come from other connections: when their query
    fails, the rebuild raises that error (not the half-fed COPY's) and its transaction rolls
    back."""
    from app.services.profile_analytics import rebuild

    tenant = await make_tenant(settings)
    await send(app, settings, tenant, generate(tenant, now=datetime.now(UTC), count=400, days=3, visitors=80, seed=41))
    await worker.drain()
    built = await snapshot(tenant.organization.id)
    sql = getattr(rebuild, query)
    assert sql.count(views) == 1
    monkeypatch.setattr(rebuild, query, sql.replace(views, views.replace("AS", "/ 0 AS")))

    with pytest.raises(asyncpg.DivisionByZeroError):
        await rebuild_rollups(tenant.organization.id)

    assert await snapshot(tenant.organization.id) == built


async def rollup_indexes() -> list[tuple[str, str]]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1::text[]) ORDER BY 1",
            ["profile_rollups", "profile_referrer_rollups", "profile_revenue_rollups"],
        )
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def test_worker_after_rebuild_keeps_counting(app, settings, worker):
    """Rebuilt rows are ordinary rollup rows: later events add to them."""
    tenant = await make_tenant(settings, timezone="America/New_York")
    now = datetime.now(UTC)
    events = generate(tenant, now=now, count=1200, days=3, visitors=200, seed=21)
    await send(app, settings, tenant, events[:600])
    await worker.drain()
    await rebuild_rollups(tenant.organization.id)
    await send(app, settings, tenant, events[600:])
    await worker.drain()
    incremental = await snapshot(tenant.organization.id)
    await rebuild_rollups(tenant.organization.id)
    assert await snapshot(tenant.organization.id) == incremental


async def test_the_month_rollup_migration_builds_what_the_worker_builds(app, settings, worker):
    """Migration 0005 gives the days rolled up before it their month rows: the same counters
    and the same sketch registers as the worker writes from then on."""
    from app.database import migration_files, transaction

    tenant = await make_tenant(settings, timezone="America/New_York")
    now = datetime.now(UTC)
    await send(app, settings, tenant, generate(tenant, now=now, count=3000, days=70, visitors=2500, seed=21))
    await worker.drain()
    built = await snapshot(tenant.organization.id)
    months = {key for key in built["rollups"] if key[1] == "month"}
    assert len(months) >= 3 and built["referrers"] and built["revenue"]

    upgrade = dict(migration_files())["0005_month_rollups"]
    async with transaction() as conn:
        for table in ("profile_rollups", "profile_referrer_rollups", "profile_revenue_rollups"):
            await conn.execute(f"DELETE FROM {table} WHERE grain = 'month'")
        await upgrade(conn)

    # 0005 predates the engagement counters (favorites, shares, clicks: 0022 added them, at 0).
    migrated, built = before_engagement(await snapshot(tenant.organization.id)), before_engagement(built)
    if migrated != built:
        print_differences(built, migrated)
    assert migrated == built


def before_engagement(snap: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without the rollups' engagement counters (positions 4 to 6)."""
    return {**snap, "rollups": {key: value[:4] + value[7:] for key, value in snap["rollups"].items()}}
