"""The insights' pre-aggregates stay equal to the events they summarise, whatever writes or
deletes events: ingestion (duplicates and late events included), data-subject deletion,
retention purges, dropped months and (the local days) a change of the organization's zone;
before the worker folds the queue into them (what readers read: the `*_live` views) and
after. Each check recounts the stored events in plain Python."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.database import connection
from app.services import privacy
from app.services.insights import rollups
from tests.support.graphql import gql
from tests.support.tenants import make_tenant
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
    at = hour_of(datetime.now(UTC) - timedelta(hours=2)) + timedelta(minutes=5)  # two page views in one hour
    await track(client, tenant, *visit(at, userId="cy"))
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
    assert counts[("page.viewed", hour_of(at), "", None)] == 2
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


# -- local days ------------------------------------------------------------------------------


def day_of(at: datetime, timezone: str) -> datetime:
    """The instant `at`'s local day starts in `timezone` (zoneinfo alone)."""
    zone = ZoneInfo(timezone)
    return datetime.combine(at.astimezone(zone).date(), time(0), tzinfo=zone).astimezone(UTC)


async def stored_days(org: uuid.UUID, timezone: str, *, live: bool = True) -> set[tuple[str, datetime, str]]:
    """(type, day, visitor) as readers see them (`live`: a queued event stands for its day)
    or as folded."""
    table = "event_actor_days_live" if live else "event_actor_days"
    async with connection() as conn:
        found = await conn.fetch(f"SELECT type, day, visitor_id FROM {table} WHERE organization_id = $1", org)
    return {(r["type"], day_of(r["day"], timezone) if live else r["day"], r["visitor_id"]) for r in found}


async def assert_days_equal_a_recount(org: uuid.UUID, timezone: str) -> set[tuple[str, datetime, str]]:
    """The local days readers see equal a recount of the stored events, before the fold
    and after it."""
    expected = {(e["type"], day_of(e["occurred_at"], timezone), e["visitor_id"])
                for e in await raw_events(org) if e["visitor_id"] is not None}  # fmt: skip
    assert await stored_days(org, timezone) == expected
    async with connection() as conn:
        await rollups.fold(conn, batch=5)
    assert await stored_days(org, timezone, live=False) == expected
    assert await stored_days(org, timezone) == expected
    return expected


async def test_local_days_follow_the_events_their_deletion_and_a_change_of_zone(client, settings):
    tenant = await make_tenant(settings, timezone="America/New_York")
    org = uuid.UUID(tenant.org_id)
    evening = datetime.now(UTC).astimezone(ZoneInfo("America/New_York")).replace(hour=23, minute=30) - timedelta(days=2)
    ids = await track(client, tenant,
        event(at=evening, userId="ada"),                          # ada's day d
        event(at=evening + timedelta(minutes=20), userId="ada"),  # d
        event(at=evening + timedelta(minutes=40), userId="ada"),  # d + 1: past local midnight, same UTC day
        event("search", at=evening + timedelta(hours=3), userId="bo"),
        event(at=evening - timedelta(days=1), anonymousId="device-c"),
    )  # fmt: skip
    days = await assert_days_equal_a_recount(org, "America/New_York")
    assert {day for _, day, visitor in days if visitor == "u:ada"} == {
        day_of(evening, "America/New_York"), day_of(evening + timedelta(hours=1), "America/New_York")
    }, "one row per local day, not per UTC day"

    # Deleting one of ada's two events of day d keeps the day; deleting the only event of
    # d + 1 takes it.
    async with connection() as conn:
        await conn.execute("DELETE FROM events WHERE organization_id = $1 AND event_id = ANY($2::text[])", org, [ids[0], ids[2]])
    days = await assert_days_equal_a_recount(org, "America/New_York")
    assert {day for _, day, visitor in days if visitor == "u:ada"} == {day_of(evening, "America/New_York")}

    # A new zone cuts other days: the organization's days are folded again in it, and so is
    # what is stored after.
    async with connection() as conn:
        await conn.execute("UPDATE organizations SET timezone = 'Asia/Tokyo' WHERE id = $1", org)
    async with connection() as conn:
        folded = await conn.fetch("SELECT DISTINCT day FROM event_actor_days WHERE organization_id = $1", org)
    assert {r["day"] for r in folded} == {day for _, day, _ in await assert_days_equal_a_recount(org, "Asia/Tokyo")}
    assert all(day_of(r["day"], "Asia/Tokyo") == r["day"] for r in folded)
    await track(client, tenant, event(at=evening + timedelta(hours=10), userId="ada"))
    await assert_days_equal_a_recount(org, "Asia/Tokyo")


async def test_a_dropped_month_takes_its_days_and_keeps_the_days_it_shares_with_its_neighbours(settings):
    """A local day of New York straddles the first and last UTC instant of a month: dropping
    the month keeps the days still holding an event of the months around it."""
    tenant = await make_tenant(settings, timezone="America/New_York")
    org = uuid.UUID(tenant.org_id)
    utc = lambda *parts: datetime(*parts, tzinfo=UTC)  # noqa: E731
    stored = [  # (visitor, UTC instant): New York is UTC-5 in winter
        ("u:jan", utc(1999, 1, 31, 20)), ("u:jan", utc(1999, 2, 1, 3)),  # local Jan 31, in January and February
        ("u:feb", utc(1999, 2, 10, 12)),                                 # February only
        ("u:mar", utc(1999, 2, 28, 23)), ("u:mar", utc(1999, 3, 1, 2)),  # local Feb 28, in February and March
    ]  # fmt: skip
    async with connection() as conn:
        for month in (1, 2, 3):
            await conn.execute("SELECT pulsegraph_ensure_month_partition('events', $1)", utc(1999, month, 1))
        await conn.executemany(
            "INSERT INTO events (organization_id, occurred_at, event_id, type, visitor_id) VALUES ($1, $2, $3, 'visit', $4)",
            [(org, at, f"old-{i}", visitor) for i, (visitor, at) in enumerate(stored)],
        )
        await rollups.fold(conn)
        try:
            async with conn.transaction():
                await conn.execute("DROP TABLE events_1999_02")
                await rollups.forget_hours(conn, utc(1999, 2, 1), utc(1999, 3, 1))
            expected = {("visit", day_of(at, "America/New_York"), visitor)
                        for visitor, at in stored if not utc(1999, 2, 1) <= at < utc(1999, 3, 1)}  # fmt: skip
            assert await stored_days(org, "America/New_York", live=False) == expected
            assert {visitor for _, _, visitor in expected} == {"u:jan", "u:mar"}
        finally:
            await conn.execute("DROP TABLE IF EXISTS events_1999_01, events_1999_02, events_1999_03")
            await conn.execute("DELETE FROM event_actor_days WHERE organization_id = $1", org)
