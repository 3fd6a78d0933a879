"""Day, week and month insights read who did what per local day (the `event_actor_days`
pre-aggregate) when every instant they cut time at starts a day of the organization's zone.
Their answers equal the plain-Python references whether the events are still queued or
folded, in New York across its fall-back day; a row planted in the days alone shows that
the answer came from them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest_asyncio

from app.auth import viewer_from_credential
from app.database import connection
from app.result_cache import result_cache
from app.services.insights import lifecycle, retention, rollups
from app.services.insights.grammar import EventMatcher, FilterOperator, PropertyFilter, PropertySource
from app.timebuckets import Grain, RangeSpec
from tests.support import lifecycle_reference
from tests.support.activity_events import Seeded, ordinal, periods_back, seeded_world
from tests.support.graphql import gql_data
from tests.support.retention_reference import retention as retention_reference

ZONE = "America/New_York"  # leaves daylight time on 2026-11-01, inside the seeded 100 days
BACK = {"day": 30, "week": 9, "month": 3}
TRENDS = """
query T($query: TrendsQueryInput!) { trends(query: $query) { series { total points { start value } } } }
"""


@pytest_asyncio.fixture(scope="module")
async def seeded(app: Any, settings: Any, client: Any) -> Seeded:
    return await seeded_world(client, settings, ZONE, seed=53)


def whole_periods(s: Seeded, grain: str) -> tuple[datetime, datetime, list[int]]:
    """Local midnights: the start of the period BACK periods before now's, the start of now's
    period, and the ordinals of the whole periods between."""
    start, ordinals = periods_back(s.now, s.timezone, grain, BACK[grain])
    end, _ = periods_back(s.now, s.timezone, grain, 0)
    return start, end, ordinals[:-1]


async def answers(client: Any, s: Seeded) -> dict[str, Any]:
    """Retention (weekly: first time and exact, recurring and on or after), lifecycle (daily),
    stickiness (weekly) and daily active persons over whole periods: every cut a local midnight. Computed afresh: the folds and
    plants below change no data version, so cached answers would be served."""
    await result_cache().announce([s.tenant.org_id])
    viewer = await viewer_from_credential(s.tenant.org_admin_token)
    org = s.tenant.org_id
    found: dict[str, Any] = {}
    start, end, _ = whole_periods(s, "week")
    cohorts = await retention.retention(
        viewer=viewer, organization_id=org, time_range=RangeSpec(start=start, end=end), start=EventMatcher("visit"),
        back=EventMatcher("buy"), period=Grain.WEEK, periods=6, cohort_kind=retention.CohortKind.FIRST_TIME, now=s.now,
    )  # fmt: skip
    found["retention"] = [c.counts for c in cohorts.cohorts]
    cohorts = await retention.retention(
        viewer=viewer, organization_id=org, time_range=RangeSpec(start=start, end=end), start=EventMatcher("visit"),
        back=EventMatcher("visit"), period=Grain.WEEK, periods=6, cohort_kind=retention.CohortKind.RECURRING,
        mode=retention.Mode.ON_OR_AFTER, now=s.now,
    )  # fmt: skip
    found["recurring"] = [c.counts for c in cohorts.cohorts]
    start, end, _ = whole_periods(s, "day")
    periods = await lifecycle.lifecycle(
        viewer=viewer, organization_id=org, time_range=RangeSpec(start=start, end=end), event=EventMatcher("visit"),
        granularity=Grain.DAY, now=s.now,
    )  # fmt: skip
    found["lifecycle"] = [(p.start, p.new, p.returning, p.resurrecting, p.dormant) for p in periods.periods]
    start, end, _ = whole_periods(s, "week")
    sticky = await lifecycle.stickiness(
        viewer=viewer, organization_id=org, time_range=RangeSpec(start=start, end=end), event=EventMatcher("buy"),
        granularity=Grain.WEEK, now=s.now,
    )  # fmt: skip
    found["stickiness"] = sticky.counts
    start, end, _ = whole_periods(s, "day")
    query = {"organizationId": org, "range": {"from": start.isoformat(), "to": end.isoformat()}, "granularity": "DAY",
             "series": [{"event": "visit", "math": "UNIQUE_PERSONS"}]}  # fmt: skip
    line = (await gql_data(client, TRENDS, {"query": query}, s.tenant.org_admin_token))["trends"]["series"][0]
    found["trends"] = [p["value"] for p in line["points"]]
    return found


def references(s: Seeded) -> dict[str, Any]:
    events, links = s.world.events, s.world.links
    expected: dict[str, Any] = {}
    _, _, weeks = whole_periods(s, "week")
    expected["retention"] = retention_reference(
        events, links, timezone=ZONE, grain="week", cohorts=weeks, periods=6, now=s.now,
        start=lambda e: e.type == "visit", back=lambda e: e.type == "buy", first_time=True, on_or_after=False,
    )[None]  # fmt: skip
    expected["recurring"] = retention_reference(
        events, links, timezone=ZONE, grain="week", cohorts=weeks, periods=6, now=s.now,
        start=lambda e: e.type == "visit", back=lambda e: e.type == "visit", first_time=False, on_or_after=True,
    )[None]  # fmt: skip
    _, _, days = whole_periods(s, "day")
    counts = lifecycle_reference.lifecycle(events, links, timezone=ZONE, grain="day", periods=days, now=s.now,
                                           match=lambda e: e.type == "visit")  # fmt: skip
    expected["lifecycle"] = counts
    stickiness = lifecycle_reference.stickiness(events, links, timezone=ZONE, grain="week", periods=weeks, now=s.now,
                                                match=lambda e: e.type == "buy")  # fmt: skip
    expected["stickiness"] = [(n, persons) for n, persons in enumerate(stickiness, start=1)]
    active: dict[int, set[str]] = {d: set() for d in days}
    for e in events:
        day = ordinal(e.occurred_at, "day", ZONE)
        if e.type == "visit" and day in active:
            active[day].add(e.key(links))
    expected["trends"] = [float(len(active[d])) for d in days]
    return expected


def comparable(found: dict[str, Any]) -> dict[str, Any]:
    """The lifecycle rows without their start (checked to be the range's days)."""
    return found | {"lifecycle": [row[1:] for row in found["lifecycle"]]}


async def test_day_week_and_month_insights_read_the_local_days_queued_and_folded(client: Any, seeded: Seeded) -> None:
    org = uuid.UUID(seeded.tenant.org_id)
    expected = references(seeded)
    _, _, days = whole_periods(seeded, "day")
    async with connection() as conn:
        queued = await conn.fetchval("SELECT count(*) FROM event_rollup_queue WHERE organization_id = $1", org)
    assert queued == len(seeded.world.events), "the events are still queued"

    found = await answers(client, seeded)
    assert [ordinal(row[0], "day", ZONE) for row in found["lifecycle"]] == days
    assert comparable(found) == expected
    assert any(sum(c for c in row[1:] if c) for row in expected["retention"]) and any(expected["trends"])

    async with connection() as conn:
        await rollups.fold(conn)
        assert await conn.fetchval("SELECT count(*) FROM event_actor_days WHERE organization_id = $1", org) > 0
    assert comparable(await answers(client, seeded)) == expected

    # A visitor planted in the days alone, active on the range's fifth day, is seen by all four.
    start, _, _ = whole_periods(seeded, "day")
    fifth = (start.astimezone(ZoneInfo(ZONE)) + timedelta(days=4)).astimezone(start.tzinfo)
    async with connection() as conn:
        await conn.executemany(
            "INSERT INTO event_actor_days (organization_id, type, day, visitor_id) VALUES ($1, $2, $3, 'u:planted')",
            [(org, "visit", fifth), (org, "buy", fifth)],
        )
    try:
        planted = comparable(await answers(client, seeded))
    finally:
        async with connection() as conn:
            await conn.execute("DELETE FROM event_actor_days WHERE organization_id = $1 AND visitor_id = 'u:planted'", org)
    assert planted["trends"][4] == expected["trends"][4] + 1
    assert planted["lifecycle"][4][0] == expected["lifecycle"][4][0] + 1, "a new person on the fifth day"
    assert sum(n for _, n in planted["stickiness"]) == sum(n for _, n in expected["stickiness"]) + 1
    assert sum(row[0] for row in planted["retention"]) == sum(row[0] for row in expected["retention"]) + 1
    assert sum(row[0] for row in planted["recurring"]) == sum(row[0] for row in expected["recurring"]) + 1
    assert comparable(await answers(client, seeded)) == expected


def test_the_days_are_read_only_when_every_cut_starts_a_local_day() -> None:
    """Local midnights of the organization's zone read the days; whole hours that are not,
    the hours; Kolkata's midnights (half past a UTC hour) and a midnight that happens twice
    (Havana falls back from 01:00 to 00:00) the events; a filter always the events."""
    def path(zone: str, *cuts: datetime, matcher: EventMatcher = EventMatcher("visit")) -> str:
        sql = rollups.actors_sql(matcher, since=cuts[0], cuts=cuts[1:], timezone=zone)
        return "events" if sql.actors_since is None else "days" if sql.actors_by_day else "hours"

    def local(zone: str, *parts: int) -> datetime:
        return datetime(*parts, tzinfo=ZoneInfo(zone))

    york = [local(ZONE, 2026, 10, 31), local(ZONE, 2026, 11, 1), local(ZONE, 2026, 11, 2)]  # 24 h, then 25 h
    assert path(ZONE, *york) == "days"
    assert path("UTC", *york) == "hours", "New York's midnights are whole hours, not UTC midnights"
    assert path(ZONE, *york, local(ZONE, 2026, 11, 2, 15)) == "hours"
    assert path("Asia/Kolkata", local("Asia/Kolkata", 2026, 11, 1), local("Asia/Kolkata", 2026, 11, 2)) == "events"
    havana = [local("America/Havana", 2026, 10, 31), local("America/Havana", 2026, 11, 1)]
    assert path("America/Havana", *havana) == "hours"
    assert path("America/Havana", havana[0], local("America/Havana", 2026, 10, 30)) == "days"
    plan = EventMatcher("visit", (PropertyFilter(PropertySource.EVENT, "plan", FilterOperator.EQUALS, "pro"),))
    assert path(ZONE, *york, matcher=plan) == "events"
