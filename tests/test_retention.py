"""Retention against a from-scratch computation (tests/support/retention_reference.py) over
seeded random events in two zones across a DST change, with identify links, equal
timestamps and late events; PostHog's published retention cases ported as facts; and the
refusals, each naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from app.auth import viewer_from_credential
from app.services.insights import retention as service
from app.services.insights.grammar import (
    Breakdown,
    EventMatcher,
    FilterOperator,
    PropertyFilter,
    PropertySource,
)
from app.timebuckets import Grain, RangeSpec
from tests.support.activity_events import (
    ZONES,
    Seeded,
    local_midnight,
    ordinal,
    periods_back,
    seeded_world,
    send_posthog_rows,
    set_person_properties,
)
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.product_events import ProductEvent, send
from tests.support.retention_reference import OTHER
from tests.support.retention_reference import retention as reference
from tests.support.tenants import Tenant, make_tenant

RETENTION = """
query R($q: RetentionQueryInput!) {
  retention(query: $q) {
    period periods cohortKind mode asOf
    cohorts { start size counts fractions }
    average
    breakdowns { value other average cohorts { start size counts fractions } }
  }
}
"""


@pytest_asyncio.fixture(scope="module", params=ZONES)
async def seeded(request: Any, app: Any, settings: Any, client: Any) -> Seeded:
    return await seeded_world(client, settings, request.param, seed=ZONES.index(request.param) + 7)


def by_type(name: str):
    return lambda e: e.type == name


CASES = {  # grain: (cohort periods back from now, return periods)
    "day": (30, 10),
    "week": (9, 8),
    "month": (3, 3),
}


def range_of(s: Seeded, grain: str) -> tuple[RangeSpec, list[int]]:
    """A custom range from the local start of some periods before now's to now (a partial
    period: the whole of it counts), and its periods as reference ordinals."""
    start, cohorts = periods_back(s.now, s.timezone, grain, CASES[grain][0])
    return RangeSpec(start=start, end=s.now), cohorts


async def run(s: Seeded, **inputs: Any) -> service.Retention:
    viewer = await viewer_from_credential(s.tenant.org_admin_token)
    return await service.retention(viewer=viewer, organization_id=s.tenant.org_id, now=s.now, **inputs)


def check_grid(found: list[service.Cohort], expected: list[list[int | None]], s: Seeded, grain: str, cohorts: list[int]) -> None:
    assert [ordinal(c.start, grain, s.timezone) for c in found] == cohorts
    assert [c.counts for c in found] == expected
    for c in found:
        assert c.size == (c.counts[0] or 0)
        assert c.fractions == [None if n is None or not c.size else n / c.size for n in c.counts]


@pytest.mark.parametrize("grain", list(CASES))
@pytest.mark.parametrize("kind", list(service.CohortKind))
@pytest.mark.parametrize("mode", list(service.Mode))
async def test_matches_the_reference(seeded: Seeded, grain: str, kind: service.CohortKind, mode: service.Mode) -> None:
    spec, cohorts = range_of(seeded, grain)
    periods = CASES[grain][1]
    start, back = EventMatcher("visit"), EventMatcher("buy")
    found = await run(seeded, time_range=spec, start=start, back=back, period=Grain(grain), periods=periods,
                      cohort_kind=kind, mode=mode)  # fmt: skip
    expected = reference(
        seeded.world.events, seeded.world.links, timezone=seeded.timezone, grain=grain, cohorts=cohorts, periods=periods,
        now=seeded.now, start=by_type("visit"), back=by_type("buy"), first_time=kind is service.CohortKind.FIRST_TIME,
        on_or_after=mode is service.Mode.ON_OR_AFTER,
    )[None]  # fmt: skip
    check_grid(found.cohorts, expected, seeded, grain, cohorts)
    assert sum(c.size for c in found.cohorts) > 0
    assert any(n is None for c in found.cohorts for n in c.counts), "cells after now are null"
    if grain == "day":
        assert any(n == 0 for c in found.cohorts for n in c.counts[1:]), "observed cells without returns are 0"
    for k, value in enumerate(found.average):
        seen = [(c.counts[k], c.size) for c in found.cohorts if c.counts[k] is not None]
        sizes = sum(size for _, size in seen)
        assert value == (sum(n for n, _ in seen) / sizes if sizes else None)


@pytest.mark.parametrize("grain", ["day", "week"])
@pytest.mark.parametrize("kind", list(service.CohortKind))
async def test_breakdown_by_the_first_start_event_matches_the_reference(seeded: Seeded, grain: str, kind: service.CohortKind) -> None:
    """Each cohort entry takes the value of the person's first start event of the cohort's
    period (equal times: the earlier arrival); the top 2 values are shown, the rest gathered."""
    spec, cohorts = range_of(seeded, grain)
    periods = CASES[grain][1]
    on_or_after = kind is service.CohortKind.RECURRING
    found = await run(
        seeded, time_range=spec, start=EventMatcher("visit"), back=EventMatcher("visit"), period=Grain(grain),
        periods=periods, cohort_kind=kind, mode=service.Mode.ON_OR_AFTER if on_or_after else service.Mode.EXACT,
        breakdown=Breakdown(PropertySource.EVENT, "plan", limit=2),
    )  # fmt: skip
    expected = reference(
        seeded.world.events, seeded.world.links, timezone=seeded.timezone, grain=grain, cohorts=cohorts, periods=periods,
        now=seeded.now, start=by_type("visit"), back=by_type("visit"), first_time=kind is service.CohortKind.FIRST_TIME,
        on_or_after=on_or_after, breakdown="plan", limit=2,
    )  # fmt: skip
    assert found.breakdowns is not None
    got = {(OTHER if b.other else b.value): b for b in found.breakdowns}
    assert set(got) == set(expected)
    assert len([b for b in found.breakdowns if not b.other]) <= 2
    for value, grid in expected.items():
        check_grid(got[value].cohorts, grid, seeded, grain, cohorts)
    total = [[sum(b.cohorts[i].counts[k] or 0 for b in found.breakdowns) for k in range(periods + 1)] for i in range(len(cohorts))]
    assert total == [[n or 0 for n in c.counts] for c in found.cohorts]


async def test_filters_and_identify_links_follow_the_reference(seeded: Seeded) -> None:
    spec, cohorts = range_of(seeded, "week")
    paid = PropertyFilter(PropertySource.EVENT, "plan", FilterOperator.IN_LIST, ("pro", "team"))
    found = await run(seeded, time_range=spec, start=EventMatcher("visit", (paid,)), back=EventMatcher("buy"),
                      period=Grain.WEEK, periods=8, cohort_kind=service.CohortKind.FIRST_TIME)  # fmt: skip
    expected = reference(
        seeded.world.events, seeded.world.links, timezone=seeded.timezone, grain="week", cohorts=cohorts, periods=8,
        now=seeded.now, start=lambda e: e.type == "visit" and e.properties.get("plan") in ("pro", "team"),
        back=by_type("buy"), first_time=True, on_or_after=False,
    )[None]  # fmt: skip
    check_grid(found.cohorts, expected, seeded, "week", cohorts)
    unlinked = reference(
        seeded.world.events, {}, timezone=seeded.timezone, grain="week", cohorts=cohorts, periods=8, now=seeded.now,
        start=by_type("visit"), back=by_type("buy"), first_time=True, on_or_after=False,
    )[None]  # fmt: skip
    linked = await run(seeded, time_range=spec, start=EventMatcher("visit"), back=EventMatcher("buy"), period=Grain.WEEK,
                       periods=8, cohort_kind=service.CohortKind.FIRST_TIME)  # fmt: skip
    assert [c.counts for c in linked.cohorts] != unlinked, "the links change who is one person"


async def test_unknown_events_answer_zeros_and_future_cohorts_nulls(seeded: Seeded) -> None:
    spec = RangeSpec(start=seeded.now - timedelta(days=2), end=seeded.now + timedelta(days=3))
    found = await run(seeded, time_range=spec, start=EventMatcher("never.sent"), back=EventMatcher("buy"), periods=4)
    today = ordinal(seeded.now, "day", seeded.timezone)
    for c in found.cohorts:
        begun = ordinal(c.start, "day", seeded.timezone) <= today
        assert c.size == 0
        assert c.counts[0] == (0 if begun else None)
        assert c.fractions == [None] * 5
    assert found.average == [None] * 5


# -- PostHog's published cases (posthog/hogql_queries/insights/test/test_retention_query_runner.py) --
# Their `_date(day, hour=5, month=0)` is 2020-06-(10 + day) + month months at that hour UTC;
# here 2026 (2026-06-10 is a Wednesday too, so their weeks fall on the same weekdays). Their
# matrices stop at their range's end (a triangle); ours count returns up to now, so each of
# our rows starts with theirs and goes on with 0 (observed, nobody came back) or null.


def _date(day: int, hour: int = 5, month: int = 0, minute: int = 0) -> datetime:
    months = 2026 * 12 + 5 + month
    base = datetime(months // 12, months % 12 + 1, 10, hour, minute, tzinfo=UTC)
    return base + timedelta(days=day)


async def posthog_events(client: Any, tenant: Tenant, rows: list[tuple], event: str = "$pageview") -> None:
    """Their rows; even-indexed events carry {"$some_property": "value"} as theirs do."""
    await send_posthog_rows(client, tenant, rows, event, aliases={"alias1": "person1"}, tagged=True)


def query(tenant: Tenant, first: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    return {"organizationId": tenant.org_id, "range": {"from": first.isoformat(), "to": end.isoformat()},
            "startEvent": {"event": "$pageview"}, "returnEvent": {"event": "$pageview"}} | extra  # fmt: skip


async def grid(client: Any, tenant: Tenant, q: dict[str, Any]) -> dict[str, Any]:
    return (await gql_data(client, RETENTION, {"q": q}, tenant.org_admin_token))["retention"]


def assert_starts_with(found: list[dict[str, Any]], triangle: list[list[int]]) -> None:
    assert len(found) == len(triangle)
    for row, theirs in zip(found, triangle, strict=True):
        assert row["counts"][: len(theirs)] == theirs, (row, theirs)
        assert row["size"] == theirs[0]
        assert all(n in (0, None) for n in row["counts"][len(theirs) :]), row


DAY_ROWS = [("person1", _date(0)), ("person1", _date(1)), ("person1", _date(2)), ("person1", _date(5)),
            ("alias1", _date(5, 9)), ("person1", _date(6)), ("person2", _date(1)), ("person2", _date(2)),
            ("person2", _date(3)), ("person2", _date(6))]  # fmt: skip


async def test_posthog_day_interval(client: Any, tenant: Tenant) -> None:
    await posthog_events(client, tenant, DAY_ROWS)
    found = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(10, hour=6), periods=10))
    assert found["cohorts"][0]["start"] == "2026-06-10T00:00:00+00:00"
    assert_starts_with(found["cohorts"], [
        [1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0], [2, 2, 1, 0, 1, 2, 0, 0, 0, 0], [2, 1, 0, 1, 2, 0, 0, 0, 0],
        [1, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [2, 0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0],
        [0, 0], [0],
    ])  # fmt: skip
    assert found["cohortKind"] == "RECURRING" and found["mode"] == "EXACT"


async def test_posthog_rolling_retention_is_on_or_after(client: Any, tenant: Tenant) -> None:
    await posthog_events(client, tenant, [
        ("person1", _date(0)), ("person1", _date(3)), ("person1", _date(4)), ("person2", _date(0)), ("person2", _date(1)),
        ("person3", _date(1)), ("person3", _date(2)), ("person3", _date(3)), ("person4", _date(3)), ("person4", _date(4)),
        ("person5", _date(4)),
    ])  # fmt: skip
    rolling = await grid(client, tenant, query(tenant, _date(1, hour=0), _date(5, hour=6), periods=4, mode="ON_OR_AFTER"))
    assert_starts_with(rolling["cohorts"], [[2, 1, 1, 0, 0], [1, 1, 0, 0], [3, 2, 0], [3, 0], [0]])
    # test_rolling_retention_doesnt_double_count_same_user: six days from day 0
    rolling = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(5, hour=6), periods=5, mode="ON_OR_AFTER"))
    assert_starts_with(rolling["cohorts"], [[2, 2, 1, 1, 1, 0], [2, 1, 1, 0, 0], [1, 1, 0, 0], [3, 2, 0], [3, 0], [0]])
    exact = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(5, hour=6), periods=5))
    assert exact["cohorts"][0]["counts"][:6] == [2, 1, 0, 1, 1, 0]  # N-day: person1 on days 3 and 4, person2 on day 1


FIRST_TIME_ROWS = {
    "$user_signed_up": [("shouldnt_include", _date(-5)), ("shouldnt_include", _date(-1)), ("person1", _date(-1)),
                        ("person1", _date(1)), ("person1", _date(2)), ("person1", _date(3)), ("person1", _date(4)),
                        ("person2", _date(-1)), ("person3", _date(0)), ("person4", _date(2))],
    "$pageview": [*DAY_ROWS, ("person3", _date(1)), ("person3", _date(3)), ("person3", _date(4)), ("person3", _date(5)),
                  ("person4", _date(3)), ("person4", _date(5))],
}  # fmt: skip


async def test_posthog_first_time_retention(client: Any, tenant: Tenant) -> None:
    for event, rows in FIRST_TIME_ROWS.items():
        await posthog_events(client, tenant, rows, event)
    q = query(tenant, _date(-1, hour=0), _date(5, hour=6), periods=6, cohortKind="FIRST_TIME",
              startEvent={"event": "$user_signed_up"})  # fmt: skip
    found = await grid(client, tenant, q)
    assert_starts_with(found["cohorts"], [
        [2, 1, 2, 2, 1, 0, 1], [1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0], [0, 0], [0],
    ])  # fmt: skip
    # test_first_time_retention_weeks: their Sunday weeks hold the same persons as ISO weeks here
    weeks = await grid(client, tenant, q | {"period": "WEEK", "range": {"from": _date(-37, hour=0).isoformat(),
                                                                       "to": _date(5, hour=6).isoformat()}})
    assert_starts_with(weeks["cohorts"], [[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0],
                                          [1, 0, 0], [4, 4], [0]])  # fmt: skip
    recurring = await grid(client, tenant, q | {"cohortKind": "RECURRING"})
    assert recurring["cohorts"][2]["size"] == 1, "person1 signs up again on day 1: a recurring cohort, not a first time"


async def test_posthog_week_and_month_intervals(client: Any, tenant: Tenant) -> None:
    await posthog_events(client, tenant, [
        ("person1", _date(0)), ("person2", _date(0)), ("person1", _date(1)), ("person2", _date(1)), ("person1", _date(7)),
        ("person2", _date(7)), ("person1", _date(14)), ("person1", _date(month=1, day=-6)),
        ("person2", _date(month=1, day=-6)), ("person2", _date(month=1, day=1)), ("person1", _date(month=1, day=1)),
        ("person2", _date(month=1, day=15)),
    ])  # fmt: skip
    weeks = await grid(client, tenant, query(tenant, _date(-2, hour=0), _date(10, month=1, hour=1), period="WEEK", periods=6))
    assert [c["start"][:10] for c in weeks["cohorts"]] == ["2026-06-08", "2026-06-15", "2026-06-22", "2026-06-29",
                                                            "2026-07-06", "2026-07-13", "2026-07-20"]  # fmt: skip
    assert_starts_with(weeks["cohorts"], [[2, 2, 1, 2, 2, 0, 1], [2, 1, 2, 2, 0, 1], [1, 1, 1, 0, 0], [2, 2, 0, 1], [2, 0, 1],
                                          [0, 0], [1]])  # fmt: skip


async def test_posthog_month_interval(client: Any, tenant: Tenant) -> None:
    await posthog_events(client, tenant, [
        ("person1", _date(day=0, month=-5)), ("person2", _date(day=0, month=-5)), ("person1", _date(day=0, month=-4)),
        ("person2", _date(day=0, month=-4)), ("person1", _date(day=0, month=-3)), ("person2", _date(day=0, month=-3)),
        ("person1", _date(day=0, month=-1)), ("person1", _date(day=0, month=0)), ("person2", _date(day=0, month=0)),
        ("person2", _date(day=0, month=1)), ("person1", _date(day=0, month=3)), ("person2", _date(day=0, month=5)),
    ])  # fmt: skip
    found = await grid(client, tenant, query(tenant, datetime(2026, 1, 1, tzinfo=UTC), _date(15, month=5, hour=0),
                                             period="MONTH", periods=10))  # fmt: skip
    assert [c["start"][:7] for c in found["cohorts"]] == [f"2026-{m:02d}" for m in range(1, 12)]
    assert_starts_with(found["cohorts"], [
        [2, 2, 2, 0, 1, 2, 1, 0, 1, 0, 1], [2, 2, 0, 1, 2, 1, 0, 1, 0, 1], [2, 0, 1, 2, 1, 0, 1, 0, 1],
        [0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 1, 0, 0], [2, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0],
        [0, 0], [1],
    ])  # fmt: skip


async def test_posthog_start_event_filter_with_first_time(client: Any, tenant: Tenant) -> None:
    await posthog_events(client, tenant, [
        ("person1", _date(0)), ("person1", _date(1)), ("person1", _date(2), {"$target_event_property": "value"}),
        ("person1", _date(5), {"$target_event_property": "value"}), ("alias1", _date(5, 9)), ("person1", _date(6)),
        ("person2", _date(1)), ("person2", _date(2)), ("person2", _date(3)), ("person2", _date(6)),
    ])  # fmt: skip
    start = {"event": "$pageview", "filters": [{"key": "$target_event_property", "value": "value"}]}
    found = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(10, hour=1), periods=10, cohortKind="FIRST_TIME",
                                             startEvent=start))  # fmt: skip
    assert_starts_with(found["cohorts"], [[0] * 11, [0] * 10, [1, 0, 0, 1, 1, 0, 0, 0, 0], *[[0] * n for n in range(8, 0, -1)]])


async def test_posthog_breakdown_by_event_property(client: Any, tenant: Tenant) -> None:
    await posthog_events(client, tenant, [
        ("person1", _date(0), {"browser": "Chrome"}), ("person1", _date(1), {"browser": "Chrome"}),
        ("person1", _date(3), {"browser": "Chrome"}), ("person3", _date(0), {"browser": "Chrome"}),
        ("person3", _date(2), {"browser": "Chrome"}), ("person2", _date(0), {"browser": "Safari"}),
        ("person2", _date(1), {"browser": "Safari"}), ("person2", _date(4), {"browser": "Safari"}),
        ("person4", _date(0), {"browser": "Firefox"}), ("person4", _date(5), {"browser": "Firefox"}),
    ])  # fmt: skip
    found = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(5, hour=1), periods=5,
                                             breakdown={"key": "browser"}))  # fmt: skip
    rows = {b["value"]: b["cohorts"] for b in found["breakdowns"]}
    assert set(rows) == {"Chrome", "Safari", "Firefox"}
    assert found["breakdowns"][0]["value"] == "Chrome"  # the largest first
    assert_starts_with(rows["Chrome"], [[2, 1, 1, 1, 0, 0], [1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0],
                                        [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # fmt: skip
    assert_starts_with(rows["Safari"], [[1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                        [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # fmt: skip
    assert_starts_with(rows["Firefox"], [[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                         [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])  # fmt: skip


async def test_posthog_hour_interval(client: Any, tenant: Tenant) -> None:
    hours = [("person1", 6), ("person2", 6), ("person1", 7), ("person2", 7), ("person1", 8), ("person2", 8), ("person1", 10),
             ("person1", 11), ("person2", 11), ("person2", 12), ("person1", 14), ("person2", 16)]  # fmt: skip
    await posthog_events(client, tenant, [(who, _date(0, hour=h)) for who, h in hours])
    found = await grid(client, tenant, query(tenant, _date(0, hour=6), _date(0, hour=16, minute=13), period="HOUR", periods=10))
    assert [c["start"][11:16] for c in found["cohorts"]] == [f"{h:02d}:00" for h in range(6, 17)]
    assert_starts_with(found["cohorts"], [
        [2, 2, 2, 0, 1, 2, 1, 0, 1, 0, 1], [2, 2, 0, 1, 2, 1, 0, 1, 0, 1], [2, 0, 1, 2, 1, 0, 1, 0, 1],
        [0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 1, 0, 0], [2, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0],
        [0, 0], [1],
    ])  # fmt: skip


async def test_equal_times_take_the_earlier_arrival(client: Any, tenant: Tenant) -> None:
    """Two start events at the same instant: the breakdown takes the one that arrived first,
    whatever the order of their ids."""
    at = _date(0)
    await send(client, tenant.ingestion_key, [
        ProductEvent(event_id="z-first", type="$pageview", occurred_at=at, user_id="ann", properties={"browser": "Safari"}),
        ProductEvent(event_id="a-second", type="$pageview", occurred_at=at, user_id="ann", properties={"browser": "Chrome"},
                     batch=1),
        ProductEvent(event_id="b-same", type="$pageview", occurred_at=at, user_id="bob", properties={"browser": "Edge"},
                     batch=2),
        ProductEvent(event_id="a-same", type="$pageview", occurred_at=at, user_id="bob", properties={"browser": "Opera"},
                     batch=2),
    ])  # fmt: skip
    found = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(0, hour=6), periods=1, breakdown={"key": "browser"}))
    assert {b["value"]: b["cohorts"][0]["size"] for b in found["breakdowns"]} == {"Safari": 1, "Opera": 1}  # same arrival: by id


async def test_posthog_breakdown_by_person_property(client: Any, tenant: Tenant) -> None:
    """test_retention_with_breakdown_with_person_properties."""
    await posthog_events(client, tenant, [
        ("person1", _date(0)), ("person1", _date(1)), ("person1", _date(3)), ("person3", _date(0)), ("person3", _date(2)),
        ("person2", _date(0)), ("person2", _date(1)), ("person2", _date(4)), ("person4", _date(0)), ("person4", _date(5)),
    ])  # fmt: skip
    for who, country in {"person1": "US", "person2": "UK", "person3": "US", "person4": "Germany"}.items():
        await set_person_properties(tenant, who, {"country": country})
    found = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(5, hour=1), periods=5,
                                             breakdown={"source": "PERSON", "key": "country"}))  # fmt: skip
    rows = {b["value"]: b["cohorts"] for b in found["breakdowns"]}
    assert set(rows) == {"US", "UK", "Germany"}
    assert_starts_with(rows["US"], [[2, 1, 1, 1, 0, 0], [1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0],
                                    [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # fmt: skip
    assert_starts_with(rows["UK"], [[1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                    [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # fmt: skip
    assert_starts_with(rows["Germany"], [[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                         [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])  # fmt: skip
    # a person property filter on the return event: only person1's returns count
    us_only = {"event": "$pageview", "filters": [{"source": "PERSON", "key": "country", "value": "US"}]}
    found = await grid(client, tenant, query(tenant, _date(0, hour=0), _date(5, hour=1), periods=5, returnEvent=us_only))
    assert found["cohorts"][0]["counts"] == [4, 1, 1, 1, 0, 0]


async def test_posthog_timezones(client: Any, app: Any, settings: Any) -> None:
    rows = [("person1", _date(-1, 1)), ("person1", _date(0, 1)), ("person1", _date(1, 1)), ("person2", _date(6, 1)),
            ("person2", _date(6, 9))]  # fmt: skip
    for zone, expected in {
        "UTC": [[1, 1] + [0] * 9, [1] + [0] * 9, *[[0] * n for n in (9, 8, 7, 6)], [1, 0, 0, 0, 0], [0] * 4, [0] * 3,
                [0] * 2, [0]],
        "America/Los_Angeles": [[1] + [0] * 10, *[[0] * n for n in (10, 9, 8, 7)], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0],
                                [0] * 4, [0] * 3, [0] * 2, [0]],
    }.items():  # fmt: skip
        tenant = await make_tenant(settings, timezone=zone)
        await posthog_events(client, tenant, rows)
        first = local_midnight(_date(0).date(), zone)
        found = await grid(client, tenant, query(tenant, first, first + timedelta(days=10, hours=6), periods=10))
        assert found["cohorts"][0]["start"] == first.astimezone(UTC).isoformat()
        assert_starts_with(found["cohorts"], expected)


# -- refusals ----------------------------------------------------------------------------

SMALL = "query R($q: RetentionQueryInput!) { retention(query: $q) { periods } }"  # priced low: the runner refuses


async def test_the_full_grid_is_priced_by_the_query_input(client: Any, tenant: Tenant) -> None:
    """Eight weekly cohorts with a breakdown of 10 pass the cost limit; 400 daily cohorts of
    100 periods with a breakdown of 100 are refused unrun."""
    q = {"organizationId": tenant.org_id, "range": {"from": "2026-09-01T00:00:00Z", "to": "2026-10-27T00:00:00Z"},
         "startEvent": {"event": "visit"}, "returnEvent": {"event": "visit"}, "period": "WEEK", "breakdown": {"key": "plan"}}
    body = await gql(client, RETENTION, {"q": q}, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    huge = q | {"period": "DAY", "periods": 100, "range": {"from": "2025-12-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
                "breakdown": {"key": "plan", "limit": 100}}
    body = await gql(client, RETENTION, {"q": huge}, token=tenant.org_admin_token)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"periods": 0}, "query.periods"),
        ({"periods": 101}, "query.periods"),
        ({"period": "HOUR", "range": {"from": "2026-09-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}}, "query.period"),
        ({"range": {"from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "periods": 100}, "query.periods"),
        ({"range": {"from": "2026-01-01T00:00:00"}}, "query.range.from"),
        ({"startEvent": {"event": " "}}, "query.startEvent.event"),
        ({"returnEvent": {"event": "x", "filters": [{"key": "p", "operator": "REGEX", "value": "(unclosed"}]}},
         "query.returnEvent.filters[0].value"),
        ({"returnEvent": {"event": "x", "filters": [{"key": "p", "operator": "REGEX", "value": "(?P<n>x)"}]}},
         "query.returnEvent.filters[0].value"),
        ({"startEvent": {"event": "x", "filters": [{"key": "p", "operator": "GREATER_THAN", "value": "many"}]}},
         "query.startEvent.filters[0].value"),
        ({"startEvent": {"event": "x", "filters": [{"source": "DIMENSION", "key": "shoe_size"}]}},
         "query.startEvent.filters[0].key"),
        ({"breakdown": {"key": "plan", "limit": 0}}, "query.breakdown.limit"),
        ({"breakdown": {"key": "plan", "attribution": "LAST_TOUCH"}}, "query.breakdown.attribution"),
    ],
)
async def test_bad_input_names_the_field(client: Any, tenant: Tenant, change: dict[str, Any], field: str) -> None:
    q = {"organizationId": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "startEvent": {"event": "visit"},
         "returnEvent": {"event": "visit"}} | change  # fmt: skip
    body = await gql(client, SMALL, {"q": q}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field, body


async def test_a_granularity_that_does_not_exist_is_refused(client: Any, tenant: Tenant) -> None:
    q = {"organizationId": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "startEvent": {"event": "visit"},
         "returnEvent": {"event": "visit"}, "period": "YEAR"}  # fmt: skip
    body = await gql(client, SMALL, {"q": q}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body


async def test_a_late_event_changes_the_answer(client: Any, tenant: Tenant) -> None:
    """An event that arrives after an answer was given, about a past period, counts at once."""
    await posthog_events(client, tenant, DAY_ROWS)
    q = query(tenant, _date(0, hour=0), _date(10, hour=6), periods=10)
    before = await grid(client, tenant, q)
    late = [ProductEvent(event_id="late-1", type="$pageview", occurred_at=_date(4, 23), user_id="person2", batch=5)]
    await send(client, tenant.ingestion_key, late)
    after = await grid(client, tenant, q)
    assert before["cohorts"][1]["counts"][3] == 0 and after["cohorts"][1]["counts"][3] == 1  # person2, day 1 -> day 4
    assert after["cohorts"][4]["size"] == 1
