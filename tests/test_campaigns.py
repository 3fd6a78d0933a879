"""Campaign performance end to end: generated sessions with UTM tags, conversions in some of
them and campaign-tagged costs, sent through the API; campaignPerformance compared with a
plain computation over the generated data."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.support.graphql import gql, gql_data
from tests.support.ledger import publish
from tests.support.tenants import make_tenant

QUERY = """query($org: ID!, $r: TimeRangeInput!) { campaignPerformance(organizationId: $org, range: $r, granularity: WEEK) {
  granularity rows { source medium campaign visits uniqueVisitors conversions revenue { amountMinor currency }
  periods { start visits conversions } }
  campaigns { campaign visits conversions revenue { amountMinor currency } cost { amountMinor currency }
  roiPercent { currency percent } } } }"""
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field } } }"
COST = """mutation($a: Int!, $cur: String!, $d: Date!, $c: String) {
  createCost(category: MARKETING, amountMinor: $a, currency: $cur, date: $d, campaign: $c) { id campaign } }"""
UTMS = [("google", "cpc", "spring"), ("newsletter", "email", "spring"), ("instagram", "social", "launch"), (None, None, None)]
CONVERSIONS = ("GIFT_PURCHASED", "ORDER_PAID", "BOOKING_COMPLETED")


def generate(rng: random.Random, start: datetime, profile: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Sessions: a first page view carrying the UTM (later views carry another one, which must
    not count), sometimes a conversion; and a few sessions before the range."""
    tracked, published, sessions = [], [], []
    for n in range(120):
        utm = rng.choice(UTMS)
        visitor = f"v-{rng.randrange(40)}"
        began = start + timedelta(minutes=rng.randrange(-3 * 24 * 60, 19 * 24 * 60))
        context = {k: v for k, v in zip(("utmSource", "utmMedium", "utmCampaign"), utm, strict=True) if v}
        sid = f"s-{n}"
        tracked.append({"type": "$pageview", "sessionId": sid, "anonymousId": visitor, "occurredAt": began.isoformat(),
                        "context": {**context, "url": "https://shop.example/"}})  # fmt: skip
        tracked.append({"type": "$pageview", "sessionId": sid, "anonymousId": visitor, "occurredAt": (began + timedelta(minutes=3)).isoformat(),
                        "context": {"utmSource": "elsewhere", "utmCampaign": "other"}})  # fmt: skip
        converted = []
        for k in range(rng.choice((0, 0, 1, 2))):
            kind, currency, amount = rng.choice(CONVERSIONS), rng.choice(("EUR", "USD")), rng.randrange(100, 9_000)
            event = {"eventId": f"c-{n}-{k}", "type": kind, "sessionId": sid, "amountMinor": amount, "currency": currency,
                     "occurredAt": (began + timedelta(minutes=5 + k)).isoformat(), "properties": {"orderId": f"o-{n}-{k}"}}  # fmt: skip
            if kind != "ORDER_PAID":
                event["profileId"] = profile
            published.append(event)
            converted.append((currency, amount))
        sessions.append({"utm": utm, "visitor": visitor, "began": began, "conversions": converted})
    return tracked, published, sessions


async def test_campaign_performance_matches_a_plain_computation(app, settings, client, worker):
    tenant = await make_tenant(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=20)
    tracked, published, sessions = generate(random.Random(5), start, tenant.profile_id)
    for i in range(0, len(tracked), 100):
        body = await gql_data(client, TRACK, {"e": tracked[i : i + 100]}, tenant.ingestion_key)
        assert body["trackEvents"]["rejected"] == []
    await publish(client, tenant, published)
    await worker.drain()
    costs = [(5_000, "EUR", 3, "spring"), (1_200, "EUR", 10, "spring"), (700, "USD", 4, "launch"),
             (9_999, "EUR", 30, "spring"), (400, "EUR", 5, None), (300, "EUR", 6, "dormant")]  # fmt: skip
    for amount, currency, days_in, campaign in costs:
        day = (start + timedelta(days=days_in)).date() if days_in < 30 else date(2020, 1, 1)
        made = await gql_data(client, COST, {"a": amount, "cur": currency, "d": day.isoformat(), "c": campaign}, tenant.org_admin_token)
        assert made["createCost"]["campaign"] == campaign
    found = (await gql_data(client, QUERY, {"org": tenant.org_id, "r": {"from": start.isoformat(), "to": now.isoformat()}},
                            tenant.org_admin_token))["campaignPerformance"]  # fmt: skip

    inside = [s for s in sessions if start <= s["began"] < now]
    expected_rows = {}
    for utm in {s["utm"] for s in inside}:
        mine = [s for s in inside if s["utm"] == utm]
        revenue: dict[str, int] = {}
        for s in mine:
            for currency, amount in s["conversions"]:
                revenue[currency] = revenue.get(currency, 0) + amount
        expected_rows[utm] = {"visits": len(mine), "uniqueVisitors": len({s["visitor"] for s in mine}),
                              "conversions": sum(len(s["conversions"]) for s in mine), "revenue": revenue}  # fmt: skip
    got_rows = {
        (r["source"], r["medium"], r["campaign"]): {"visits": r["visits"], "uniqueVisitors": r["uniqueVisitors"],
                                                    "conversions": r["conversions"], "revenue": as_map(r["revenue"])}
        for r in found["rows"]
    }  # fmt: skip
    assert got_rows == expected_rows
    assert (found["rows"][-1]["source"], found["rows"][-1]["campaign"]) == (None, None)  # untagged traffic last
    for row in found["rows"]:
        starts = [datetime.fromisoformat(p["start"]) for p in row["periods"]] + [now + timedelta(days=8)]
        utm = (row["source"], row["medium"], row["campaign"])
        for i, period in enumerate(row["periods"]):
            mine = [s for s in inside if s["utm"] == utm and starts[i] <= s["began"] < starts[i + 1]]
            assert (period["visits"], period["conversions"]) == (len(mine), sum(len(s["conversions"]) for s in mine))

    expected_costs = {"spring": {"EUR": 6_200}, "launch": {"USD": 700}, "dormant": {"EUR": 300}}
    for total in found["campaigns"]:
        name = total["campaign"]
        revenue = {}
        for utm, row in expected_rows.items():
            if utm[2] == name:
                for currency, amount in row["revenue"].items():
                    revenue[currency] = revenue.get(currency, 0) + amount
        cost = expected_costs.get(name, {})
        assert total["visits"] == sum(r["visits"] for u, r in expected_rows.items() if u[2] == name)
        assert as_map(total["revenue"]) == revenue and as_map(total["cost"]) == cost
        assert {r["currency"]: r["percent"] for r in total["roiPercent"]} == {
            c: round((revenue.get(c, 0) - n) * 100 / n, 2) for c, n in cost.items()
        }
    assert [t["campaign"] for t in found["campaigns"]] == ["dormant", "launch", "spring"]


async def test_campaign_performance_refuses_providers_and_bad_ranges(app, settings, client):
    tenant = await make_tenant(settings)
    body = await gql(client, QUERY, {"org": tenant.org_id, "r": {"from": "2026-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}},
                     token=tenant.org_admin_token)  # fmt: skip
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await gql(client, COST, {"a": 1, "cur": "EUR", "d": "2026-01-01", "c": "x" * 201}, token=tenant.org_admin_token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"].get("field") == "campaign"


def as_map(money: list[dict[str, Any]]) -> dict[str, int]:
    return {m["currency"]: m["amountMinor"] for m in money}
