"""Session metrics: duration, pages, bounces, entry and exit pages, checked against the same
visits computed in plain Python."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.graphql import gql_data
from tests.support.product_events import ProductEvent, ordered, send
from tests.support.tenants import make_tenant

SESSIONS = """
query Sessions($org: ID!, $range: TimeRangeInput!, $granularity: Granularity) {
  sessionMetrics(organizationId: $org, range: $range, granularity: $granularity) {
    granularity
    total { sessions averageDurationSeconds pagesPerSession bounceRate }
    periods { start sessions averageDurationSeconds pagesPerSession bounceRate }
    topEntryPages { page sessions }
    topExitPages { page sessions }
  }
}
"""
PAGES = ["/", "/search", "/listing/1", "/listing/2", "/checkout"]


def visits(seed: int, first_day: datetime, days: int) -> list[ProductEvent]:
    """60 visits of 1 to 6 events, each with its own client session id; some events carry no
    URL, some arrive late."""
    rng = random.Random(seed)
    events = []
    for visit in range(60):
        start = first_day + timedelta(seconds=rng.randint(0, days * 86400 - 1))
        moment = start
        for n in range(rng.choice([1, 1, 2, 3, 6])):
            moment += timedelta(seconds=rng.randint(0, 600)) if n else timedelta(0)
            page = rng.choice(PAGES)
            event = ProductEvent(
                event_id=f"s-{seed}-{visit}-{n}", type="page.viewed" if n % 4 != 3 else "button.clicked",
                occurred_at=moment, anonymous_id=f"visitor-{visit % 25}",
                url=None if n % 4 == 3 else f"https://shop.example{page}?utm_source=x#top",
                batch=1 if rng.random() < 0.15 else 0, session_id=f"visit-{seed}-{visit}",
            )  # fmt: skip
            events.append(event)
    return events


@pytest.mark.parametrize("timezone", ["America/New_York", "Europe/Berlin"])
async def test_session_metrics_match_the_visits(settings: Any, client: Any, timezone: str) -> None:
    tenant = await make_tenant(settings, timezone=timezone)
    tz = ZoneInfo(timezone)
    first_day = datetime(2026, 10, 23, tzinfo=tz).astimezone(UTC)  # both zones change clocks within 10 days
    events = visits(21, first_day, 10)
    await send(client, tenant.org_admin_token, events)

    window = {"from": (first_day + timedelta(days=1)).isoformat(), "to": (first_day + timedelta(days=8)).isoformat()}
    result = (await gql_data(client, SESSIONS, {"org": tenant.org_id, "range": window}, tenant.org_admin_token))[
        "sessionMetrics"
    ]
    by_session: dict[str, list[ProductEvent]] = defaultdict(list)
    for e in events:
        by_session[e.session_id or ""].append(e)
    start, end = first_day + timedelta(days=1), first_day + timedelta(days=8)
    chosen = [ordered(s) for s in by_session.values() if start <= min(e.occurred_at for e in s) < end]
    durations = [(s[-1].occurred_at - s[0].occurred_at).total_seconds() for s in chosen]
    pages = [[e.url.split("?")[0].removeprefix("https://shop.example") for e in s if e.url] for s in chosen]

    total = result["total"]
    assert total["sessions"] == len(chosen)
    assert total["averageDurationSeconds"] == pytest.approx(sum(durations) / len(chosen))
    assert total["pagesPerSession"] == pytest.approx(sum(len(p) for p in pages) / len(chosen))
    assert total["bounceRate"] == pytest.approx(sum(1 for s in chosen if len(s) == 1) / len(chosen))
    assert len(result["periods"]) == 7
    assert sum(p["sessions"] for p in result["periods"]) == len(chosen)
    per_day = Counter(min(e.occurred_at for e in s).astimezone(tz).date() for s in chosen)
    assert [p["sessions"] for p in result["periods"]] == [
        per_day[datetime.fromisoformat(p["start"]).astimezone(tz).date()] for p in result["periods"]
    ]

    def top(counts: Counter[str]) -> list[dict[str, Any]]:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return [{"page": f"https://shop.example{p}", "sessions": n} for p, n in ranked]

    assert result["topEntryPages"] == top(Counter(p[0] for p in pages if p))
    assert result["topExitPages"] == top(Counter(p[-1] for p in pages if p))


async def test_an_organization_without_sessions_answers_zeros(client: Any, tenant: Any) -> None:
    variables = {"org": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}}
    result = (await gql_data(client, SESSIONS, variables, tenant.org_admin_token))["sessionMetrics"]
    assert result["total"] == {"sessions": 0, "averageDurationSeconds": 0.0, "pagesPerSession": 0.0, "bounceRate": 0.0}
    assert len(result["periods"]) == 7 and result["topEntryPages"] == []
