"""The insights' pre-aggregates stay equal to the events they summarise, whatever writes or
deletes events: ingestion (duplicates and late events included), data-subject deletion and
retention purges, before the worker folds the queue into them (what readers read: the
`*_live` views) and after. Each check recounts the stored events in plain Python."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from app.services import privacy
from app.services.insights import rollups
from tests.support.graphql import gql
from tests.test_privacy import DELETE, ago, event, set_retention, track

DIMENSIONS = ("country", "device_type", "browser", "os", "referrer_domain", "utm_source", "utm_medium", "utm_campaign")
COLUMNS = "type, occurred_at, visitor_id, country::text AS country, " + ", ".join(DIMENSIONS[1:])


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def recount(events: list[dict[str, Any]]) -> tuple[Counter, set, dict]:
    """The three pre-aggregates, from the raw rows."""
    counts: Counter = Counter()
    actors: set[tuple[str, datetime, str]] = set()
    first: dict[tuple[str, str], datetime] = {}
    for e in events:
        hour = hour_of(e["occurred_at"])
        counts[(e["type"], hour, "", None)] += 1
        for dimension in DIMENSIONS:
            counts[(e["type"], hour, dimension, e[dimension])] += 1
        if e["visitor_id"] is not None:
            actors.add((e["type"], hour, e["visitor_id"]))
            key = (e["type"], e["visitor_id"])
            first[key] = min(first.get(key, hour), hour)
    return counts, actors, first


async def stored(org: uuid.UUID, *, live: bool = True) -> tuple[Counter, set, dict]:
    """What readers see (`live`: the aggregates and the queue) or the aggregates alone."""
    suffix = "_live" if live else ""
    async with connection() as conn:
        counts = await conn.fetch(
            f"SELECT type, hour, dimension, value, events FROM event_hour_counts{suffix} WHERE organization_id = $1", org
        )
        actors = await conn.fetch(f"SELECT type, hour, visitor_id FROM event_actor_hours{suffix} WHERE organization_id = $1", org)
        first = await conn.fetch(
            f"SELECT type, visitor_id, min(first_hour) AS first_hour FROM event_actor_first{suffix}"
            " WHERE organization_id = $1 GROUP BY 1, 2", org
        )  # fmt: skip
    summed: Counter = Counter()
    for r in counts:
        summed[(r["type"], r["hour"], r["dimension"], r["value"])] += r["events"]
    return (
        Counter({key: n for key, n in summed.items() if n != 0}),
        {(r["type"], r["hour"], r["visitor_id"]) for r in actors},
        {(r["type"], r["visitor_id"]): r["first_hour"] for r in first},
    )


async def raw_events(org: uuid.UUID) -> list[dict[str, Any]]:
    async with connection() as conn:
        return [dict(r) for r in await conn.fetch(f"SELECT {COLUMNS} FROM events WHERE organization_id = $1", org)]


async def assert_equal_to_a_recount(org: uuid.UUID) -> list[dict[str, Any]]:
    """What readers see equals a recount, before the fold and after it; then the queue is empty."""
    events = await raw_events(org)
    expected = recount(events)
    assert await stored(org) == expected
    async with connection() as conn:
        await rollups.fold(conn, batch=7)  # several batches
        assert await conn.fetchval("SELECT count(*) FROM event_rollup_queue WHERE organization_id = $1", org) == 0
    assert await stored(org, live=False) == expected
    assert await stored(org) == expected
    return events


def visit(at: datetime, **who: Any) -> list[dict[str, Any]]:
    """A short visit: three page views and a search within a few minutes."""
    marketing = {"context": {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1",
                             "ip": "81.2.69.160", "referrer": "https://news.example/today", "utmSource": "newsletter",
                             "utmMedium": "email", "utmCampaign": "spring"}}  # fmt: skip
    return [
        event(at=at, **who),
        event(at=at + timedelta(minutes=2), **who, **marketing),
        event("search", at=at + timedelta(minutes=3), ip="2.125.160.216", **who),
        event(at=at + timedelta(minutes=70), ip=None, **who),
    ]


async def test_pre_aggregates_equal_a_recount_through_ingest_duplicates_late_events_and_deletion(
    client, tenant, other_tenant, worker
):
    org, other = uuid.UUID(tenant.org_id), uuid.UUID(other_tenant.org_id)
    now = datetime.now(UTC)
    batch = [
        *visit(now - timedelta(hours=2), userId="ada"),
        *visit(now - timedelta(days=3), userId="bo", anonymousId="device-b"),
        *visit(now - timedelta(days=3, minutes=30), anonymousId="device-c"),
        event("signup", at=now - timedelta(days=9), userId="ada"),
    ]
    ids = await track(client, tenant, *batch)
    await track(client, other_tenant, *visit(now - timedelta(hours=1), userId="ada"))
    events = await assert_equal_to_a_recount(org)
    assert len(events) == len(batch)
    await assert_equal_to_a_recount(other)

    # The same events again are duplicates: nothing counts twice.
    again = [dict(e, eventId=i) for e, i in zip(batch, ids, strict=True)]
    await track(client, tenant, *again)
    assert len(await assert_equal_to_a_recount(org)) == len(batch)

    # A late event moves ada's first page view back by a month.
    await track(client, tenant, event(at=now - timedelta(days=40), userId="ada"))
    await track(client, tenant, event(at=now - timedelta(days=45), anonymousId="device-c"))
    _, _, first = await stored(org)
    assert first[("page.viewed", "u:ada")] == hour_of(now - timedelta(days=40))
    assert first[("page.viewed", "a:device-c")] == hour_of(now - timedelta(days=45))
    await assert_equal_to_a_recount(org)

    # Deleting a data subject takes their hours, and their first hours, with their events.
    body = await gql(client, DELETE, {"user": "ada"}, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    events = await assert_equal_to_a_recount(org)
    assert all(e["visitor_id"] != "u:ada" for e in events)
    _, actors, first = await stored(org)
    assert not any(visitor == "u:ada" for _, _, visitor in actors) and ("page.viewed", "u:ada") not in first
    await assert_equal_to_a_recount(other)

    # The retention purge deletes what is older than 31 days, in chunks: the rollups follow,
    # and device-c's first page view moves to their visit of three days ago.
    await worker.drain()
    await set_retention(client, tenant, events=31)
    await privacy.purge_expired_events(datetime.now(UTC))
    events = await assert_equal_to_a_recount(org)
    assert events and all(e["occurred_at"] > ago(days=31) for e in events)
    _, _, first = await stored(org)
    assert first[("page.viewed", "a:device-c")] == hour_of(now - timedelta(days=3, minutes=30))
    counts, _, _ = await stored(org)
    assert sum(n for (t, _, d, _), n in counts.items() if d == "") == len(events)


async def test_a_running_worker_folds_what_ingestion_queued(client, tenant, worker):
    org = uuid.UUID(tenant.org_id)
    async with connection() as conn:  # what earlier tests queued: a wake-up folds a bounded part
        await rollups.fold(conn)
    await track(client, tenant, *visit(datetime.now(UTC) - timedelta(hours=1), userId="cy"))
    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM event_rollup_queue WHERE organization_id = $1", org) == 4
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            async with connection() as conn:
                if not await conn.fetchval("SELECT count(*) FROM event_rollup_queue WHERE organization_id = $1", org):
                    break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await running
    counts, actors, first = await stored(org, live=False)
    assert counts[("page.viewed", hour_of(datetime.now(UTC) - timedelta(hours=1)), "", None)] >= 2
    assert ("search", "u:cy") in first
    assert await stored(org) == recount(await raw_events(org))


async def test_the_worker_vacuums_the_queue_it_folded_and_refreshes_the_statistics(client, tenant, worker, monkeypatch):
    """Folded queue rows are deleted; the worker vacuums them away once enough were folded,
    so reads of the aggregates do not walk them, wherever autovacuum is off or behind."""
    monkeypatch.setattr(rollups, "VACUUM_QUEUE_AFTER", 3)
    monkeypatch.setattr(rollups, "ANALYZE_AGGREGATES_AFTER", 3)
    async with connection() as conn:
        await rollups.fold(conn)
        before = await conn.fetchrow(VACUUMED)
    await track(client, tenant, *visit(datetime.now(UTC) - timedelta(hours=2), userId="dee"))
    assert await worker.fold_rollups() == 4
    for _ in range(100):  # the statistics land a moment after the commands end
        async with connection() as conn:
            after = await conn.fetchrow(VACUUMED)
        if after["vacuums"] > before["vacuums"] and after["analyses"] > before["analyses"]:
            break
        await asyncio.sleep(0.05)
    assert after["vacuums"] > before["vacuums"], "the queue was vacuumed"
    assert after["analyses"] > before["analyses"], "the aggregates' statistics were refreshed"
    assert await worker.fold_rollups() == 0  # nothing folded: nothing to tidy either


VACUUMED = """
SELECT (SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'event_rollup_queue') AS vacuums,
       (SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'event_hour_counts') AS analyses
"""
