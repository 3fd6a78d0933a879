"""Lifecycle and stickiness against from-scratch computations (tests/support/lifecycle_reference.py)
over seeded random events in two zones across a DST change, with identify links, equal
timestamps and late events; PostHog's published lifecycle and stickiness cases ported as
facts; and the refusals, each naming its field."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from app.auth import viewer_from_credential
from app.services.insights import lifecycle as service
from app.services.insights.grammar import EventMatcher, FilterOperator, PropertyFilter, PropertySource
from app.services.insights.lifecycle import MASK_POSITIONS
from app.timebuckets import Grain, RangeSpec
from tests.support import lifecycle_reference as reference
from tests.support.activity_events import (
    ZONES,
    Seeded,
    ordinal,
    periods_back,
    seeded_world,
    send_posthog_rows,
    set_person_properties,
)
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.product_events import ProductEvent, send
from tests.support.tenants import Tenant

LIFECYCLE = """
query L($q: LifecycleQueryInput!) {
  lifecycle(query: $q) { granularity asOf range { from to timezone } periods { start new returning resurrecting dormant } }
}
"""
STICKINESS = """
query S($q: StickinessQueryInput!) {
  stickiness(query: $q) { granularity periods persons counts { activePeriods persons } }
}
"""
BACK = {"day": 30, "week": 9, "month": 3}


@pytest_asyncio.fixture(scope="module", params=ZONES)
async def seeded(request: Any, app: Any, settings: Any, client: Any) -> Seeded:
    return await seeded_world(client, settings, request.param, seed=ZONES.index(request.param) + 31)


async def viewer(s: Seeded) -> Any:
    return await viewer_from_credential(s.tenant.org_admin_token)


def paid(e: ProductEvent) -> bool:
    return e.type == "visit" and e.properties.get("plan") in ("pro", "team")


PAID = EventMatcher("visit", (PropertyFilter(PropertySource.EVENT, "plan", FilterOperator.IN_LIST, ("pro", "team")),))


# 75 days: more positions than a bigint has bits, so classified row by row, not by bit masks
@pytest.mark.parametrize("grain, back", [*BACK.items(), ("day", 75)])
@pytest.mark.parametrize("matcher", ["visit", "paid visit"])
async def test_lifecycle_matches_the_reference(seeded: Seeded, grain: str, back: int, matcher: str) -> None:
    start, periods = periods_back(seeded.now, seeded.timezone, grain, back)
    assert (len(periods) + 2 > MASK_POSITIONS) == (back == 75)
    end = seeded.now + timedelta(days=40 if grain == "day" else 70)  # periods after now: null
    event, match = (EventMatcher("visit"), lambda e: e.type == "visit") if matcher == "visit" else (PAID, paid)
    found = await service.lifecycle(
        viewer=await viewer(seeded), organization_id=seeded.tenant.org_id, time_range=RangeSpec(start=start, end=end),
        event=event, granularity=Grain(grain), now=seeded.now,
    )  # fmt: skip
    ordinals = [ordinal(p.start, grain, seeded.timezone) for p in found.periods]
    assert ordinals[: len(periods)] == periods and ordinals == list(range(ordinals[0], ordinals[-1] + 1))
    expected = reference.lifecycle(seeded.world.events, seeded.world.links, timezone=seeded.timezone, grain=grain,
                                   periods=ordinals, now=seeded.now, match=match)  # fmt: skip
    got = [None if p.new is None else (p.new, p.returning, p.resurrecting, p.dormant) for p in found.periods]
    assert got == expected
    assert expected[len(periods)] is None, "a period after now's has no counts"
    assert all(row[3] <= 0 for row in expected if row) and any(row[3] < 0 for row in expected if row)
    assert sum(row[0] for row in expected if row) > 0
    if grain != "month":
        assert sum(row[2] for row in expected if row) > 0


@pytest.mark.parametrize("grain", list(BACK))
@pytest.mark.parametrize("matcher", ["buy", "paid visit"])
async def test_stickiness_matches_the_reference(seeded: Seeded, grain: str, matcher: str) -> None:
    start, periods = periods_back(seeded.now, seeded.timezone, grain, BACK[grain])
    event, match = (EventMatcher("buy"), lambda e: e.type == "buy") if matcher == "buy" else (PAID, paid)
    found = await service.stickiness(
        viewer=await viewer(seeded), organization_id=seeded.tenant.org_id, time_range=RangeSpec(start=start, end=seeded.now),
        event=event, granularity=Grain(grain), now=seeded.now,
    )  # fmt: skip
    expected = reference.stickiness(seeded.world.events, seeded.world.links, timezone=seeded.timezone, grain=grain,
                                    periods=periods, now=seeded.now, match=match)  # fmt: skip
    assert found.periods == len(periods)
    assert found.counts == [(n, persons) for n, persons in enumerate(expected, start=1)]
    assert found.persons == sum(expected) > 0


async def test_unknown_events_answer_zeros(client: Any, tenant: Tenant) -> None:
    q = {"organizationId": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "event": {"event": "never.sent"}}
    found = (await gql_data(client, LIFECYCLE, {"q": q}, tenant.org_admin_token))["lifecycle"]
    assert [(p["new"], p["returning"], p["resurrecting"], p["dormant"]) for p in found["periods"]] == [(0, 0, 0, 0)] * 7
    found = (await gql_data(client, STICKINESS, {"q": q}, tenant.org_admin_token))["stickiness"]
    assert found["persons"] == 0 and found["counts"] == [{"activePeriods": n, "persons": 0} for n in range(1, 8)]


# -- PostHog's published cases (posthog/hogql_queries/insights/test/test_lifecycle_query_runner.py and
# test_stickiness_query_runner.py): their 2020 dates moved 313 weeks on (2191 days: same weekdays). Their
# date_to is a day they include; ours is the exclusive end, the day after.

SHIFT = timedelta(days=2191)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text) + SHIFT


def lifecycle_query(tenant: Tenant, first: str, after_last: str, **extra: Any) -> dict[str, Any]:
    return {"organizationId": tenant.org_id, "range": {"from": t(first).isoformat(), "to": t(after_last).isoformat()},
            "event": {"event": "$pageview"}} | extra  # fmt: skip


async def series(client: Any, tenant: Tenant, q: dict[str, Any]) -> dict[str, list[int]]:
    found = (await gql_data(client, LIFECYCLE, {"q": q}, tenant.org_admin_token))["lifecycle"]
    return {status: [p[status] for p in found["periods"]] for status in ("new", "returning", "resurrecting", "dormant")}


LIFECYCLE_ROWS = [
    *[("p1", t(d)) for d in ("2020-01-11T12:00:00Z", "2020-01-12T12:00:00Z", "2020-01-13T12:00:00Z", "2020-01-15T12:00:00Z",
                             "2020-01-17T12:00:00Z", "2020-01-19T12:00:00Z")],
    ("p2", t("2020-01-09T12:00:00Z")), ("p2", t("2020-01-12T12:00:00Z")), ("p3", t("2020-01-12T12:00:00Z")),
    ("p4", t("2020-01-15T12:00:00Z")),
]  # fmt: skip


async def test_posthog_lifecycle_trend(client: Any, tenant: Tenant) -> None:
    await send_posthog_rows(client, tenant, LIFECYCLE_ROWS, aliases={})
    found = await series(client, tenant, lifecycle_query(tenant, "2020-01-12T00:00:00Z", "2020-01-20T00:00:00Z"))
    assert found == {
        "dormant": [0, -2, -1, 0, -2, 0, -1, 0], "new": [1, 0, 0, 1, 0, 0, 0, 0],
        "resurrecting": [1, 0, 0, 1, 0, 1, 0, 1], "returning": [1, 1, 0, 0, 0, 0, 0, 0],
    }  # fmt: skip


async def test_posthog_lifecycle_event_filter(client: Any, tenant: Tenant) -> None:
    """test_lifecycle_trend_prop_filtering: only p1's events carry $number = 1, the first of
    them the day before the range: never new in it."""
    rows = [(who, when, {"$number": 1} if who == "p1" else {}) for who, when in LIFECYCLE_ROWS]
    await send_posthog_rows(client, tenant, rows, aliases={})
    event = {"event": "$pageview", "filters": [{"key": "$number", "value": "1"}]}
    found = await series(client, tenant, lifecycle_query(tenant, "2020-01-12T00:00:00Z", "2020-01-20T00:00:00Z", event=event))
    assert found == {
        "dormant": [0, 0, -1, 0, -1, 0, -1, 0], "new": [0, 0, 0, 0, 0, 0, 0, 0],
        "resurrecting": [0, 0, 0, 1, 0, 1, 0, 1], "returning": [1, 1, 0, 0, 0, 0, 0, 0],
    }  # fmt: skip


async def test_posthog_lifecycle_person_property_filter(client: Any, tenant: Tenant) -> None:
    """test_lifecycle_trend_person_prop_filtering: only p1 is named p1."""
    await send_posthog_rows(client, tenant, LIFECYCLE_ROWS, aliases={})
    for who in ("p1", "p2", "p3", "p4"):
        await set_person_properties(tenant, who, {"name": who})
    event = {"event": "$pageview", "filters": [{"source": "PERSON", "key": "name", "value": "p1"}]}
    q = lifecycle_query(tenant, "2020-01-12T00:00:00Z", "2020-01-20T00:00:00Z", event=event)
    assert await series(client, tenant, q) == {
        "new": [0, 0, 0, 0, 0, 0, 0, 0], "returning": [1, 1, 0, 0, 0, 0, 0, 0],
        "resurrecting": [0, 0, 0, 1, 0, 1, 0, 1], "dormant": [0, 0, -1, 0, -1, 0, -1, 0],
    }  # fmt: skip
    found = (await gql_data(client, STICKINESS, {"q": q}, tenant.org_admin_token))["stickiness"]
    assert found["persons"] == 1 and found["counts"][4]["persons"] == 1  # p1: 12, 13, 15, 17, 19


async def test_posthog_lifecycle_distinct_id_repeat(client: Any, tenant: Tenant) -> None:
    """test_lifecycle_trends_distinct_id_repeat: another_p1 is p1 (here: a device identified as p1)."""
    rows = [("p1", t("2020-01-12T12:00:00Z")), ("another_p1", t("2020-01-14T12:00:00Z")), ("p1", t("2020-01-15T12:00:00Z")),
            ("p1", t("2020-01-17T12:00:00Z")), ("p1", t("2020-01-19T12:00:00Z"))]  # fmt: skip
    await send_posthog_rows(client, tenant, rows, aliases={"another_p1": "p1"})
    found = await series(client, tenant, lifecycle_query(tenant, "2020-01-12T00:00:00Z", "2020-01-20T00:00:00Z"))
    assert found == {
        "dormant": [0, -1, 0, 0, -1, 0, -1, 0], "new": [1, 0, 0, 0, 0, 0, 0, 0],
        "resurrecting": [0, 0, 1, 0, 0, 1, 0, 1], "returning": [0, 0, 0, 1, 0, 0, 0, 0],
    }  # fmt: skip


async def test_posthog_lifecycle_weeks(client: Any, tenant: Tenant) -> None:
    """test_lifecycle_trend_weeks_monday: weeks from Monday 2020-02-03 to the week of 2020-03-09."""
    rows = [
        *[("p1", t(d)) for d in ("2020-02-01T12:00:00Z", "2020-02-05T12:00:00Z", "2020-02-10T12:00:00Z",
                                 "2020-02-15T12:00:00Z", "2020-02-27T12:00:00Z", "2020-03-02T12:00:00Z")],
        ("p2", t("2020-02-11T12:00:00Z")), ("p2", t("2020-02-18T12:00:00Z")), ("p3", t("2020-02-12T12:00:00Z")),
        ("p4", t("2020-02-27T12:00:00Z")),
    ]  # fmt: skip
    await send_posthog_rows(client, tenant, rows, aliases={})
    q = lifecycle_query(tenant, "2020-02-05T00:00:00Z", "2020-03-09T00:00:01Z", granularity="WEEK")
    found = (await gql_data(client, LIFECYCLE, {"q": q}, tenant.org_admin_token))["lifecycle"]
    assert [p["start"][:10] for p in found["periods"]] == [
        (t(f"{d}T00:00:00Z")).date().isoformat() for d in ("2020-02-03", "2020-02-10", "2020-02-17", "2020-02-24",
                                                            "2020-03-02", "2020-03-09")
    ]  # fmt: skip
    assert await series(client, tenant, q) == {
        "dormant": [0, 0, -2, -1, -1, -1], "new": [0, 2, 0, 1, 0, 0], "resurrecting": [0, 0, 0, 1, 0, 0],
        "returning": [1, 1, 1, 0, 1, 0],
    }  # fmt: skip


STICKY_P1 = [f"2020-01-{d}T12:00:00Z" for d in range(11, 20)]
STICKY_P2 = [f"2020-01-{d}T12:00:00Z" for d in (11, 13, 15, 17, 19)]


async def test_posthog_stickiness(client: Any, tenant: Tenant) -> None:
    """test_interval_day, test_property_filtering, test_interval_week, test_interval_month: p1
    did $pageview on 9 days, p2 on 5. PostHog's day series has 11 buckets for ten days
    (2020-01-11..20) and its Sunday weeks give 3 weeks each; ISO weeks here give 2 each."""
    rows = [("p1", t(d), {"$browser": "Chrome"}) for d in STICKY_P1] + [("p2", t(d), {"$browser": "Firefox"}) for d in STICKY_P2]
    await send_posthog_rows(client, tenant, rows, aliases={})
    q = lifecycle_query(tenant, "2020-01-11T00:00:00Z", "2020-01-21T00:00:00Z")

    async def persons(**extra: Any) -> list[int]:
        found = (await gql_data(client, STICKINESS, {"q": q | extra}, tenant.org_admin_token))["stickiness"]
        return [c["persons"] for c in found["counts"]]

    assert await persons() == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    chrome = {"event": "$pageview", "filters": [{"key": "$browser", "value": "Chrome"}]}
    assert await persons(event=chrome) == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert await persons(granularity="WEEK") == [0, 2, 0]
    assert await persons(granularity="MONTH") == [2]


# -- refusals and late events ---------------------------------------------------------------


@pytest.mark.parametrize("operation", [LIFECYCLE, STICKINESS])
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"granularity": "HOUR", "range": {"from": "2026-09-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}}, "query.granularity"),
        ({"range": {"from": "2026-03-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}}, "query.range.to"),
        ({"event": {"event": ""}}, "query.event.event"),
        ({"event": {"event": "x", "filters": [{"key": "p", "operator": "REGEX", "value": "[z-a]"}]}}, "query.event.filters[0].value"),
        ({"event": {"event": "x", "filters": [{"key": "p", "operator": "REGEX", "value": "(?P<n>x)"}]}},
         "query.event.filters[0].value"),
        ({"event": {"event": "x", "filters": [{"key": "p", "operator": "IS_SET", "source": "COHORT"}]}},
         "query.event.filters[0].key"),
    ],
)
async def test_bad_input_names_the_field(client: Any, tenant: Tenant, operation: str, change: dict[str, Any], field: str) -> None:
    q = {"organizationId": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "event": {"event": "visit"}} | change
    small = operation.split("{", 2)[0] + "{ " + ("lifecycle" if operation is LIFECYCLE else "stickiness") + "(query: $q) { granularity } }"
    body = await gql(client, small, {"q": q}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field, body


async def test_a_late_event_changes_the_answer(client: Any, tenant: Tenant) -> None:
    await send_posthog_rows(client, tenant, LIFECYCLE_ROWS, aliases={})
    q = lifecycle_query(tenant, "2020-01-12T00:00:00Z", "2020-01-20T00:00:00Z")
    before = await series(client, tenant, q)
    late = ProductEvent(event_id="late-p3", type="$pageview", occurred_at=t("2020-01-13T23:59:59Z"), user_id="p3", batch=9)
    await send(client, tenant.ingestion_key, [late])
    after = await series(client, tenant, q)
    assert (before["returning"][1], before["dormant"][1], before["dormant"][2]) == (1, -2, -1)
    assert (after["returning"][1], after["dormant"][1], after["dormant"][2]) == (2, -1, -2)  # p3 stays a day longer
