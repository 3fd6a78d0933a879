"""The users preset (DAU, WAU, MAU, stickiness, day-N retention, churn) against the same
persons' activity counted in plain Python."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.graphql import gql_data
from tests.support.product_events import ProductEvent, send
from tests.support.tenants import make_tenant

USERS = """
query Users($org: ID!, $range: TimeRangeInput!, $granularity: Granularity) {
  userMetrics(organizationId: $org, range: $range, granularity: $granularity) {
    active dau wau mau stickiness churnRate averageSessionDurationSeconds
    retention { day rate }
    points { start active weeklyActive monthlyActive churnRate }
  }
  sessionMetrics(organizationId: $org, range: $range) { total { averageDurationSeconds } }
}
"""


def activity(seed: int, first_day: date, days: int, tz: ZoneInfo) -> list[ProductEvent]:
    """40 people, each arriving on some day and coming back on a few later days."""
    rng = random.Random(seed)
    events = []
    for person in range(40):
        arrival = rng.randrange(days)
        active_days = {arrival} | {arrival + rng.randint(1, 35) for _ in range(rng.randint(0, 5))}
        for day in sorted(d for d in active_days if d < days):
            local = datetime.combine(first_day + timedelta(days=day), datetime.min.time(), tzinfo=tz)
            for n in range(rng.randint(1, 3)):
                moment = (local + timedelta(hours=rng.uniform(0, 23.9))).astimezone(UTC)
                events.append(ProductEvent(f"u-{seed}-{person}-{day}-{n}", rng.choice(["page.viewed", "search"]),
                                           moment, user_id=f"person-{person}", batch=int(rng.random() < 0.2)))  # fmt: skip
    return events


@pytest.mark.parametrize("timezone", ["America/New_York", "Europe/Berlin"])
async def test_user_metrics_match_a_plain_count(settings: Any, client: Any, timezone: str) -> None:
    tenant = await make_tenant(settings, timezone=timezone)
    tz = ZoneInfo(timezone)
    first_day = date(2026, 9, 20)  # both zones leave summer time within the range
    events = activity(5, first_day, 60, tz)
    await send(client, tenant.org_admin_token, events)
    start_day, end_day = first_day + timedelta(days=20), first_day + timedelta(days=50)  # [start, end)
    window = {
        "from": datetime.combine(start_day, datetime.min.time(), tzinfo=tz).isoformat(),
        "to": datetime.combine(end_day, datetime.min.time(), tzinfo=tz).isoformat(),
    }
    variables = {"org": tenant.org_id, "range": window, "granularity": "DAY"}
    data = await gql_data(client, USERS, variables, tenant.org_admin_token)
    result = data["userMetrics"]

    active_on: dict[date, set[str]] = {}
    first_seen: dict[str, date] = {}
    for e in events:
        day = e.occurred_at.astimezone(tz).date()
        active_on.setdefault(day, set()).add(e.user_id or "")
        first_seen[e.user_id or ""] = min(first_seen.get(e.user_id or "", day), day)
    days = [start_day + timedelta(days=i) for i in range((end_day - start_day).days)]

    def active_within(last: date, width: int) -> set[str]:
        return set().union(*(active_on.get(last - timedelta(days=k), set()) for k in range(width)))

    assert result["active"] == len(set().union(*(active_on.get(d, set()) for d in days)))
    assert result["dau"] == pytest.approx(sum(len(active_on.get(d, set())) for d in days) / len(days))
    assert result["wau"] == len(active_within(days[-1], 7))
    assert result["mau"] == len(active_within(days[-1], 30))
    assert result["stickiness"] == pytest.approx(
        sum(len(active_on.get(d, set())) / len(active_within(d, 30)) for d in days if active_within(d, 30)) / len(days)
    )
    assert [p["weeklyActive"] for p in result["points"]] == [len(active_within(d, 7)) for d in days]

    today = datetime.now(tz).date()
    assert all(cell["rate"] for cell in result["retention"]), result["retention"]  # every cell has persons
    for cell in result["retention"]:
        n = cell["day"]
        cohort = [p for p, d in first_seen.items() if start_day <= d < end_day and d + timedelta(days=n) < today]
        back = [p for p in cohort if p in active_on.get(first_seen[p] + timedelta(days=n), set())]
        assert cell["rate"] == (pytest.approx(len(back) / len(cohort)) if cohort else None), n

    pairs = [(active_on.get(a, set()), active_on.get(b, set())) for a, b in zip(days, days[1:], strict=False)]
    assert result["churnRate"] == pytest.approx(sum(len(a - b) for a, b in pairs) / sum(len(a) for a, _ in pairs))
    assert result["points"][0]["churnRate"] is None
    for (before, after), point in zip(pairs, result["points"][1:], strict=True):
        assert point["churnRate"] == (pytest.approx(len(before - after) / len(before)) if before else None)
    assert result["averageSessionDurationSeconds"] == data["sessionMetrics"]["total"]["averageDurationSeconds"]

    weekly = (await gql_data(client, USERS, {**variables, "granularity": "WEEK"}, tenant.org_admin_token))["userMetrics"]
    daily_figures = ("active", "dau", "wau", "mau", "stickiness", "retention")
    assert {k: weekly[k] for k in daily_figures} == {k: result[k] for k in daily_figures}  # days, whatever the points
