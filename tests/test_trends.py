"""Trends read like a product team's questions, answered from every event and checked against
a from-scratch count in plain Python over the same generated events."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app.database import connection
from app.services.insights.persons import link
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.product_events import ProductEvent, send
from tests.support.stacks import running_stack
from tests.support.tenants import make_tenant

TRENDS = """
query Trends($query: TrendsQueryInput!) {
  trends(query: $query) {
    range { from to timezone }
    granularity
    series { label seriesIndex math breakdownValue isOther compare total points { start value } }
  }
}
"""
PLANS = ["free", "pro", "team", "enterprise"]
SOURCES = ["google", "newsletter", "twitter"]


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def linear_percentile(values: list[float], q: float) -> float:
    """percentile_cont / numpy's default: linear between the closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def generated_events(seed: int, first_day: datetime, days: int) -> tuple[list[ProductEvent], dict[str, str]]:
    """Signups, searches and bookings of 40 people over `days`, some anonymous and linked
    later, some sent late (a later batch with earlier times), a few at equal instants."""
    rng = random.Random(seed)
    events: list[ProductEvent] = []
    links: dict[str, str] = {}
    for person in range(40):
        user = f"user-{person}" if person % 3 else None
        anonymous = f"anon-{person}"
        if person % 3 == 1:
            links[f"a:{anonymous}"] = f"u:{user}"  # browsed anonymously, then signed in
        for n in range(rng.randint(1, 12)):
            moment = first_day + timedelta(seconds=rng.randint(0, days * 86400 - 1))
            kind = rng.choice(["signup", "search", "search", "booking"])
            properties: dict[str, Any] = {"plan": rng.choice(PLANS)}
            if kind == "booking":
                properties["price"] = rng.choice([rng.randint(5, 500), round(rng.uniform(1, 99), 2), "n/a"])
            anonymous_only = user is None or (person % 3 == 1 and n % 2 == 0)
            events.append(
                ProductEvent(
                    event_id=f"e-{seed}-{person}-{n}",
                    type=kind,
                    occurred_at=moment,
                    user_id=None if anonymous_only else user,
                    anonymous_id=anonymous,
                    properties=properties,
                    url=f"https://shop.example/p?utm_source={rng.choice(SOURCES)}",
                    batch=1 if rng.random() < 0.2 else 0,  # late arrivals
                )
            )
    twin = events[0]
    events.append(
        ProductEvent(f"e-{seed}-twin", twin.type, twin.occurred_at, twin.user_id, twin.anonymous_id, dict(twin.properties))
    )
    return events, links


def person_of(event: ProductEvent, links: dict[str, str]) -> str:
    return event.key(links)


async def tenant_with_events(settings: Any, client: Any, timezone: str, seed: int, first_day: datetime, days: int):
    tenant = await make_tenant(settings, timezone=timezone)
    events, links = generated_events(seed, first_day, days)
    await send(client, tenant.org_admin_token, events)
    async with connection() as conn:
        for alias, person in links.items():
            await link(conn, organization_id=tenant.organization.id, anonymous_id=alias[2:], user_id=person[2:])
    return tenant, events, links


ZONES = [
    # America/New_York leaves daylight time on 2026-11-01: that local day is 25 hours long.
    ("America/New_York", datetime(2026, 10, 27, 4, tzinfo=UTC)),
    ("Asia/Kolkata", datetime(2026, 10, 26, 18, 30, tzinfo=UTC)),
]


@pytest.mark.parametrize(("timezone", "first_day"), ZONES)
async def test_daily_events_persons_and_property_maths_match_a_plain_count(
    settings: Any, client: Any, timezone: str, first_day: datetime
) -> None:
    tenant, events, links = await tenant_with_events(settings, client, timezone, 11, first_day, 10)
    tz = ZoneInfo(timezone)
    start_day = local_day(first_day, tz)
    series = [
        {"event": "search"},
        {"event": "booking", "math": "UNIQUE_PERSONS"},
        {"event": "booking", "math": "AVERAGE", "property": "price"},
        {"event": "booking", "math": "P90", "property": "price"},
        {"event": "search", "math": "PER_PERSON_AVERAGE"},
        {"event": "booking", "math": "SUM", "property": "price",
         "filters": [{"key": "plan", "operator": "IN_LIST", "value": ["pro", "team"]}]},
    ]  # fmt: skip
    query = {
        "organizationId": tenant.org_id,
        "range": {"from": first_day.isoformat(), "to": (first_day + timedelta(days=10)).isoformat()},
        "granularity": "DAY",
        "series": series,
    }
    result = (await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token))["trends"]
    assert result["granularity"] == "DAY" and result["range"]["timezone"] == timezone
    lines = result["series"]
    assert [line["seriesIndex"] for line in lines] == list(range(6))
    days = [start_day + timedelta(days=i) for i in range(10)]
    assert len(lines[0]["points"]) == 10
    assert [datetime.fromisoformat(p["start"]).astimezone(tz).date() for p in lines[0]["points"]] == days
    if timezone == "America/New_York":
        starts = [datetime.fromisoformat(p["start"]) for p in lines[0]["points"]]
        assert {b - a for a, b in zip(starts, starts[1:], strict=False)} == {timedelta(hours=24), timedelta(hours=25)}

    by_day: dict[str, dict[date, list[ProductEvent]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        by_day[e.type][local_day(e.occurred_at, tz)].append(e)

    def prices(found: list[ProductEvent]) -> list[float]:
        return [float(e.properties["price"]) for e in found if isinstance(e.properties.get("price"), int | float)]

    def approx(values: list[float]) -> list[Any]:
        return [pytest.approx(v, rel=1e-9, abs=1e-9) for v in values]

    assert [p["value"] for p in lines[0]["points"]] == [len(by_day["search"][d]) for d in days]
    assert lines[0]["total"] == sum(len(by_day["search"][d]) for d in days)
    assert [p["value"] for p in lines[1]["points"]] == [len({person_of(e, links) for e in by_day["booking"][d]}) for d in days]
    all_bookings = [e for d in days for e in by_day["booking"][d]]
    assert lines[1]["total"] == len({person_of(e, links) for e in all_bookings})
    assert [p["value"] for p in lines[2]["points"]] == approx(
        [sum(prices(by_day["booking"][d])) / len(prices(by_day["booking"][d])) if prices(by_day["booking"][d]) else 0.0 for d in days]
    )
    assert lines[3]["total"] == pytest.approx(linear_percentile(prices(all_bookings), 0.9))
    searches = [e for d in days for e in by_day["search"][d]]
    assert lines[4]["total"] == pytest.approx(len(searches) / len({person_of(e, links) for e in searches}))
    assert lines[5]["total"] == pytest.approx(sum(prices([e for e in all_bookings if e.properties["plan"] in ("pro", "team")])))


async def test_breakdown_shows_the_top_values_and_gathers_the_rest(settings: Any, client: Any) -> None:
    timezone, first_day = ZONES[0]
    tenant, events, links = await tenant_with_events(settings, client, timezone, 12, first_day, 7)
    query = {
        "organizationId": tenant.org_id,
        "range": {"from": first_day.isoformat(), "to": (first_day + timedelta(days=7)).isoformat()},
        "series": [{"event": "search", "math": "UNIQUE_PERSONS"}],
        "breakdown": {"key": "plan", "limit": 2},
    }
    lines = (await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token))["trends"]["series"]
    searches = [e for e in events if e.type == "search"]
    volume = Counter(e.properties["plan"] for e in searches)
    top = [plan for plan, _ in sorted(volume.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]
    assert [line["breakdownValue"] for line in lines] == [*top, "$other"]
    assert [line["isOther"] for line in lines] == [False, False, True]
    for line in lines:
        members = [e for e in searches if (e.properties["plan"] in top) == (not line["isOther"])]
        if not line["isOther"]:
            members = [e for e in members if e.properties["plan"] == line["breakdownValue"]]
        assert line["total"] == len({person_of(e, links) for e in members})

    bookings = [e for e in events if e.type == "booking"]
    averages = {**query, "series": [{"event": "booking", "math": "AVERAGE", "property": "price"},
                                    {"event": "booking", "math": "MAX", "property": "price"}]}  # fmt: skip
    lines = (await gql_data(client, TRENDS, {"query": averages}, tenant.org_admin_token))["trends"]["series"]
    volume = Counter(e.properties["plan"] for e in bookings)
    top = [plan for plan, _ in sorted(volume.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]
    for line in lines:
        chosen = [e for e in bookings if (e.properties["plan"] == line["breakdownValue"]) or
                  (line["isOther"] and e.properties["plan"] not in top)]  # fmt: skip
        prices = [float(e.properties["price"]) for e in chosen if isinstance(e.properties.get("price"), int | float)]
        expected = (sum(prices) / len(prices) if prices else 0.0) if line["math"] == "AVERAGE" else max(prices, default=0.0)
        assert line["total"] == pytest.approx(expected), line["breakdownValue"]
    assert [line["breakdownValue"] for line in lines] == [*top, "$other"] * 2

    by_source = {**query, "breakdown": {"source": "DIMENSION", "key": "utm_source"}, "series": [{"event": "search"}]}
    lines = (await gql_data(client, TRENDS, {"query": by_source}, tenant.org_admin_token))["trends"]["series"]
    expected = Counter(e.url.split("utm_source=")[1] if e.url else None for e in searches)  # the twin has no URL
    assert {line["breakdownValue"]: line["total"] for line in lines} == dict(expected)


async def test_compare_formula_and_rolling_weekly_actives(settings: Any, client: Any) -> None:
    timezone, first_day = ZONES[0]
    tenant, events, links = await tenant_with_events(settings, client, timezone, 13, first_day, 14)
    tz = ZoneInfo(timezone)
    week_start = first_day + timedelta(days=7)
    query = {
        "organizationId": tenant.org_id,
        "range": {"from": week_start.isoformat(), "to": (week_start + timedelta(days=7)).isoformat()},
        "series": [{"event": "search"}, {"event": "booking"}],
        "compare": True,
    }
    lines = (await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token))["trends"]["series"]
    assert [(line["seriesIndex"], line["compare"]) for line in lines] == [
        (0, "CURRENT"), (0, "PREVIOUS"), (1, "CURRENT"), (1, "PREVIOUS")
    ]  # fmt: skip
    first_week = [e for e in events if first_day <= e.occurred_at < week_start]
    assert lines[1]["total"] == sum(1 for e in first_week if e.type == "search")
    assert lines[3]["points"][0]["start"] == first_day.isoformat()

    ratio = {**query, "compare": False, "formula": "B / A * 100"}
    (line,) = (await gql_data(client, TRENDS, {"query": ratio}, tenant.org_admin_token))["trends"]["series"]
    second_week = [e for e in events if week_start <= e.occurred_at < week_start + timedelta(days=7)]
    searches, bookings = (sum(1 for e in second_week if e.type == t) for t in ("search", "booking"))
    assert line["label"] == "B / A * 100" and line["seriesIndex"] is None
    assert line["total"] == pytest.approx(bookings / searches * 100 if searches else 0.0)

    weekly = {**query, "compare": False, "series": [{"event": "search", "math": "WEEKLY_ACTIVE"}]}
    (line,) = (await gql_data(client, TRENDS, {"query": weekly}, tenant.org_admin_token))["trends"]["series"]
    for point in line["points"]:
        last_day = datetime.fromisoformat(point["start"]).astimezone(tz).date()
        window = {last_day - timedelta(days=k) for k in range(7)}
        active = {person_of(e, links) for e in events if e.type == "search" and local_day(e.occurred_at, tz) in window}
        assert point["value"] == len(active), last_day


async def test_filters_on_dimensions_text_and_numbers(settings: Any, client: Any) -> None:
    timezone, first_day = ZONES[1]
    tenant, events, links = await tenant_with_events(settings, client, timezone, 14, first_day, 5)
    window = {"from": first_day.isoformat(), "to": (first_day + timedelta(days=5)).isoformat()}

    async def total(filters: list[dict[str, Any]], event: str = "booking") -> float:
        query = {"organizationId": tenant.org_id, "range": window, "series": [{"event": event, "filters": filters}]}
        return (await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token))["trends"]["series"][0]["total"]

    bookings = [e for e in events if e.type == "booking"]
    numeric = [e for e in bookings if isinstance(e.properties.get("price"), int | float)]
    assert await total([{"key": "price", "operator": "GREATER_THAN", "value": 100}]) == sum(
        1 for e in numeric if e.properties["price"] > 100
    )
    assert await total([{"key": "plan", "operator": "CONTAINS", "value": "RO"}]) == sum(
        1 for e in bookings if "ro" in e.properties["plan"]
    )
    assert await total([{"key": "plan", "operator": "REGEX", "value": "^(free|team)$"}]) == sum(
        1 for e in bookings if e.properties["plan"] in ("free", "team")
    )
    assert await total([{"key": "price", "operator": "IS_NOT_SET"}]) == 0
    assert await total([{"key": "coupon", "operator": "NOT_EQUALS", "value": "x"}]) == len(bookings)
    assert await total([{"source": "DIMENSION", "key": "utm_source", "value": "google"}]) == sum(
        1 for e in bookings if e.url and e.url.endswith("google")
    )
    assert await total([], event="no.such.event") == 0
    assert await total([], event="$all") == len(events)
    assert await total([{"key": "plan", "value": "pro"}], event="$all") == sum(1 for e in events if e.properties["plan"] == "pro")


async def test_person_property_filter_follows_identify_links(settings: Any, client: Any) -> None:
    timezone, first_day = ZONES[0]
    tenant, events, links = await tenant_with_events(settings, client, timezone, 15, first_day, 5)
    async with connection() as conn:
        await conn.execute(
            "INSERT INTO persons (organization_id, id, properties) VALUES ($1, 'u:user-1', '{\"tier\": \"gold\"}')"
            " ON CONFLICT (organization_id, id) DO UPDATE SET properties = EXCLUDED.properties",  # ingestion made the row
            tenant.organization.id,
        )
    query = {
        "organizationId": tenant.org_id,
        "range": {"from": first_day.isoformat(), "to": (first_day + timedelta(days=5)).isoformat()},
        "series": [{"event": "search", "filters": [{"source": "PERSON", "key": "tier", "value": "gold"}]}],
    }
    (line,) = (await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token))["trends"]["series"]
    # user-1 searched signed in and, before signing in, anonymously as anon-1: both count.
    expected = sum(1 for e in events if e.type == "search" and person_of(e, links) == "u:user-1")
    assert any(e.user_id is None and person_of(e, links) == "u:user-1" for e in events)
    assert line["total"] == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"series": []}, "query.series"),
        ({"series": [{"event": "booking", "math": "P95"}]}, "query.series[0].property"),
        ({"series": [{"event": "x", "filters": [{"key": "a", "operator": "REGEX", "value": "(["}]}]}, "query.series[0].filters[0].value"),
        ({"series": [{"event": "x", "filters": [{"key": "a", "operator": "GREATER_THAN", "value": "many"}]}]}, "query.series[0].filters[0].value"),
        ({"series": [{"event": "x", "filters": [{"source": "DIMENSION", "key": "shoe_size"}]}]}, "query.series[0].filters[0].key"),
        ({"series": [{"event": "x", "filters": [{"key": "a", "operator": "EQUALS"}]}]}, "query.series[0].filters[0].value"),
        ({"formula": "A / C"}, "query.formula"),
        ({"formula": "__import__('os')"}, "query.formula"),
        ({"breakdown": {"key": "plan", "limit": 0}}, "query.breakdown.limit"),
        ({"granularity": "HOUR", "range": {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}}, "granularity"),
    ],
)  # fmt: skip
async def test_bad_questions_name_the_field(client: Any, tenant: Any, change: dict[str, Any], field: str) -> None:
    query = {
        "organizationId": tenant.org_id,
        "range": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-08T00:00:00Z"},
        "series": [{"event": "search"}],
        **change,
    }
    body = await gql(client, TRENDS, {"query": query}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field


async def test_providers_are_refused_and_other_organizations_are_not_found(client: Any, tenant: Any, other_tenant: Any) -> None:
    query = {"organizationId": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "series": [{"event": "search"}]}
    assert error_codes(await gql(client, TRENDS, {"query": query}, token=tenant.provider_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, TRENDS, {"query": query}, token=other_tenant.org_admin_token)) == ["NOT_FOUND"]
    result = await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token)
    assert [p["value"] for p in result["trends"]["series"][0]["points"]] == [0.0] * 7


async def test_cohorts_filter_and_break_down_a_trend(settings: Any, client: Any) -> None:
    timezone, first_day = ZONES[1]
    tenant, events, links = await tenant_with_events(settings, client, timezone, 16, first_day, 6)
    org = tenant.organization.id
    persons = sorted({person_of(e, links) for e in events})
    loyal, curious = uuid.uuid4(), uuid.uuid4()
    members = {loyal: set(persons[:10]), curious: set(persons[5:20])}  # persons 5..9 are in both
    async with connection() as conn:
        for cohort, people in members.items():
            await conn.execute(
                "INSERT INTO cohorts (organization_id, id, name, kind, created_by) VALUES ($1, $2, 'c', 'static', 't')",
                org, cohort,
            )  # fmt: skip
            await conn.executemany(
                "INSERT INTO cohort_members (organization_id, cohort_id, person_id) VALUES ($1, $2, $3)",
                [(org, cohort, p) for p in people],
            )
    window = {"from": first_day.isoformat(), "to": (first_day + timedelta(days=6)).isoformat()}
    searches = [e for e in events if e.type == "search"]
    query = {
        "organizationId": tenant.org_id, "range": window, "series": [{"event": "search"}],
        "breakdown": {"source": "COHORT", "key": f"{loyal},{curious}"},
    }  # fmt: skip
    lines = (await gql_data(client, TRENDS, {"query": query}, tenant.org_admin_token))["trends"]["series"]
    assert {line["breakdownValue"]: line["total"] for line in lines} == {
        str(cohort): sum(1 for e in searches if person_of(e, links) in people) for cohort, people in members.items()
    }
    outsiders = {**query, "breakdown": None,
                 "series": [{"event": "search", "filters": [{"source": "COHORT", "key": str(loyal), "operator": "IS_NOT_SET"}]}]}  # fmt: skip
    (line,) = (await gql_data(client, TRENDS, {"query": outsiders}, tenant.org_admin_token))["trends"]["series"]
    assert line["total"] == sum(1 for e in searches if person_of(e, links) not in members[loyal])


async def test_a_statement_past_the_timeout_is_query_timeout_and_the_server_keeps_serving(
    database_url: str, tenant: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API process whose statements may run 50 ms, asked for distinct persons among 300,000
    events: PostgreSQL cancels the statement, the answer is QUERY_TIMEOUT (not a masked
    error), and the process answers the next request."""
    first_day = datetime(2026, 9, 1, tzinfo=UTC)
    rows = [
        (tenant.organization.id, first_day + timedelta(seconds=n * 5), f"heavy-{n}", "search", f"u:person-{n % 50_000}",
         f'{{"plan": "p{n % 997}"}}')
        for n in range(300_000)
    ]  # fmt: skip
    conn = await asyncpg.connect(database_url)  # setup, not under test: no statement timeout
    try:
        await conn.execute("SELECT pulsegraph_ensure_month_partition('events', '2026-09-01T00:00:00Z')")
        await conn.copy_records_to_table(
            "events", records=rows, columns=("organization_id", "occurred_at", "event_id", "type", "visitor_id", "properties")
        )
    finally:
        await conn.close()
    monkeypatch.setenv("PULSEGRAPH_STATEMENT_TIMEOUT_MS", "50")
    monkeypatch.setenv("PULSEGRAPH_RESULT_CACHE", "0")
    with running_stack(
        "insight-timeout", database_url=database_url, broadcast_url="memory://", work_dir=tmp_path, in_process_worker=True
    ) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
            query = {
                "organizationId": tenant.org_id, "range": {"from": "2026-09-01T00:00:00Z", "to": "2026-09-30T00:00:00Z"},
                "series": [{"event": "search", "math": "UNIQUE_PERSONS"}], "breakdown": {"key": "plan", "limit": 100},
            }  # fmt: skip
            body = await gql(http, TRENDS, {"query": query}, token=tenant.org_admin_token)
            assert error_codes(body) == ["QUERY_TIMEOUT"], body
            assert (await http.get("/healthz")).status_code == 200
