"""Marketplace and revenue metrics end to end: searches, views, purchases and subscriptions
published through the API, recorded by the real worker, read back through GraphQL and
compared with plain Python over what was sent."""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from app.database import connection
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.marketplace_events import publish

COUNTS = "searches zeroResultSearches views conversions conversionRate sales { amountMinor currency }"
MARKETPLACE = f"""
query($org: ID, $range: TimeRangeInput!, $g: Granularity, $c: String, $limit: Int) {{
  marketplaceMetrics(organizationId: $org, range: $range, granularity: $g, category: $c, limit: $limit) {{
    starts total {{ {COUNTS} }}
    points {{ searches zeroResultSearches views conversions conversionRates }}
    topQueries {{ query searches zeroResults }} zeroResultQueries {{ query searches zeroResults }}
    topServices {{ serviceId counts {{ {COUNTS} }} }} topCategories {{ category counts {{ {COUNTS} }} }}
    funnel {{ index event count }}
  }}
}}"""
MOVE = "amountMinor customerCount customers(limit: 100) { customerId before after }"
REVENUE = f"""
query($org: ID, $range: TimeRangeInput!, $g: Granularity) {{
  revenueMetrics(organizationId: $org, range: $range, granularity: $g) {{
    starts gmv {{ amountMinor currency }} take {{ amountMinor currency }} takeRates {{ currency rate }}
    creatorEarnings {{ amountMinor currency }} transactions averageOrderValue {{ amountMinor currency }}
    arpu {{ amountMinor currency }} payingCustomers mrr {{ amountMinor currency }}
    series {{ currency gmv take transactions }}
    mrrMonths {{ month measuredAt currency mrr previousMrr subscribers new {{ {MOVE} }} reactivation {{ {MOVE} }}
      expansion {{ {MOVE} }} contraction {{ {MOVE} }} churn {{ {MOVE} }} }}
    topCreators {{ creatorId gmv {{ amountMinor currency }} take {{ amountMinor currency }} earnings {{ amountMinor currency }} transactions }}
  }}
}}"""
SERVICES = {"logo": "design", "banner": "design", "essay": "writing", "voiceover": "audio"}
QUERIES = ["Logo Design", "logo  design ", "cheap banner", "essay help", "voice over", "unicorn tamer"]


def money(totals: dict[str, int]) -> list[dict[str, Any]]:
    return [{"amountMinor": a, "currency": c} for c, a in sorted(totals.items())]


def norm(query: str) -> str:
    return " ".join(query.strip().lower().split())


@dataclass
class Shopper:
    person: str
    events: list[tuple[str, datetime, dict[str, Any]]]


def shoppers(rng: random.Random, now: datetime, count: int) -> list[Shopper]:
    """Each shopper searches, then maybe views services, then maybe buys one, in that order."""
    out = []
    for n in range(count):
        person = f"shopper-{n}"
        at = now - timedelta(days=rng.uniform(0.2, 5.5))
        events = []
        for _ in range(rng.randint(0, 2)):
            query = rng.choice(QUERIES)
            at += timedelta(minutes=rng.randint(1, 30))
            events.append(("MARKETPLACE_SEARCHED", at, {"query": query, "resultsCount": 0 if "unicorn" in query else rng.randint(1, 40),
                                                        **({"category": "design"} if "logo" in query.lower() else {})}))  # fmt: skip
        for _ in range(rng.randint(0, 3)):
            service = rng.choice(sorted(SERVICES))
            at += timedelta(minutes=rng.randint(1, 30))
            events.append(("MARKETPLACE_VIEWED", at, {"serviceId": service, "category": SERVICES[service]}))
        if events and events[-1][0] == "MARKETPLACE_VIEWED" and rng.random() < 0.5:
            service = events[-1][2]["serviceId"]
            at += timedelta(minutes=rng.randint(1, 30))
            events.append(("MARKETPLACE_CONVERTED", at, {"serviceId": service, "category": SERVICES[service], "orderId": f"o-{n}",
                                                         "amountMinor": rng.randint(500, 9000), "currency": rng.choice(["EUR", "USD"])}))  # fmt: skip
        out.append(Shopper(person, [e for e in events if e[1] < now]))
    return out


def to_events(people: list[Shopper], tag: str) -> list[dict[str, Any]]:
    events = []
    for shopper in people:
        for i, (kind, at, props) in enumerate(shopper.events):
            props = dict(props)
            event = {"eventId": f"{tag}-{shopper.person}-{i}", "type": kind, "occurredAt": at.isoformat(), "userId": shopper.person}
            if kind == "MARKETPLACE_CONVERTED":
                event["amountMinor"], event["currency"] = props.pop("amountMinor"), props.pop("currency")
                props["creatorId"] = f"creator-{props['serviceId']}"
                props["takeRateBps"] = 1500
            event["properties"] = props
            events.append(event)
    return events


def funnel_counts(people: list[Shopper], category: str | None) -> list[int]:
    """Persons reaching each ordered step (search, view, purchase) of the category's events."""
    counts = [0, 0, 0]
    steps = ["MARKETPLACE_SEARCHED", "MARKETPLACE_VIEWED", "MARKETPLACE_CONVERTED"]
    for shopper in people:
        mine = sorted((at, kind) for kind, at, props in shopper.events if category is None or props.get("category") == category)
        reached = -1
        for _, kind in mine:
            if reached + 1 < 3 and kind == steps[reached + 1]:
                reached += 1
        for k in range(reached + 1):
            counts[k] += 1
    return counts


def expected_market(people: list[Shopper], category: str | None) -> dict[str, Any]:
    rows = [(kind, at, props) for s in people for kind, at, props in s.events if category is None or props.get("category") == category]
    searches = [p for k, _, p in rows if k == "MARKETPLACE_SEARCHED"]
    views = [p for k, _, p in rows if k == "MARKETPLACE_VIEWED"]
    sales = [p for k, _, p in rows if k == "MARKETPLACE_CONVERTED"]
    queries = Counter(norm(p["query"]) for p in searches)
    zero = Counter(norm(p["query"]) for p in searches if p["resultsCount"] == 0)
    per_service: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in views:
        per_service[p["serviceId"]][0] += 1
    for p in sales:
        per_service[p["serviceId"]][1] += 1
    return {
        "searches": len(searches), "zero": sum(zero.values()), "views": len(views), "conversions": len(sales),
        "queries": sorted(queries.items(), key=lambda q: (-q[1], q[0])), "zero_queries": sorted(zero.items(), key=lambda q: (-q[1], q[0])),
        "services": sorted(per_service, key=lambda s: (-per_service[s][1], -per_service[s][0], s)), "per_service": per_service,
    }  # fmt: skip


async def test_marketplace_metrics_match_what_shoppers_did(client, worker, tenant):
    now = datetime.now(UTC)
    people = shoppers(random.Random(44), now, 80)
    await publish(client, tenant.service_token, to_events(people, uuid.uuid4().hex[:6]))
    await worker.drain()
    variables = {"org": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "g": "DAY", "limit": 100}
    found = (await gql_data(client, MARKETPLACE, variables, tenant.viewer_token))["marketplaceMetrics"]
    want = expected_market(people, None)
    total = found["total"]
    assert (total["searches"], total["zeroResultSearches"], total["views"], total["conversions"]) == (
        want["searches"], want["zero"], want["views"], want["conversions"])
    assert total["conversionRate"] == pytest.approx(want["conversions"] / want["views"])
    sales: dict[str, int] = defaultdict(int)
    for s in people:
        for kind, _, p in s.events:
            if kind == "MARKETPLACE_CONVERTED":
                sales[p["currency"]] += p["amountMinor"]
    assert total["sales"] == money(sales)
    assert [(q["query"], q["searches"]) for q in found["topQueries"]] == want["queries"]
    assert "logo design" in [q["query"] for q in found["topQueries"]]
    assert [(q["query"], q["zeroResults"]) for q in found["zeroResultQueries"]] == want["zero_queries"] == [("unicorn tamer", want["zero"])]
    assert [s["serviceId"] for s in found["topServices"]] == want["services"]
    for row in found["topServices"]:
        views, conversions = want["per_service"][row["serviceId"]]
        assert (row["counts"]["views"], row["counts"]["conversions"]) == (views, conversions)
    assert sum(found["points"]["views"]) == want["views"] and sum(found["points"]["searches"]) == want["searches"]
    for i, start in enumerate(found["starts"]):
        lo = datetime.fromisoformat(start)
        hi = datetime.fromisoformat(found["starts"][i + 1]) if i + 1 < len(found["starts"]) else lo + timedelta(days=1)
        assert found["points"]["conversions"][i] == sum(1 for s in people for k, at, _ in s.events if k == "MARKETPLACE_CONVERTED" and lo <= at < hi)
    categories = {c["category"]: c["counts"] for c in found["topCategories"]}
    assert categories[None]["searches"] == sum(1 for s in people for k, _, p in s.events if k == "MARKETPLACE_SEARCHED" and "category" not in p)
    assert [step["count"] for step in found["funnel"]] == funnel_counts(people, None)
    assert [step["event"] for step in found["funnel"]] == ["marketplace.searched", "marketplace.viewed", "marketplace.converted"]
    async with connection() as conn:
        rolled = await conn.fetchval(
            "SELECT sum(events) FROM marketplace_rollups WHERE organization_id = $1 AND grain = 'hour'", tenant.organization.id)
    assert rolled == sum(len(s.events) for s in people)  # closed hours are read from these
    start = (now - timedelta(days=3)).replace(minute=23, second=0, microsecond=0)  # partial hours at the edges
    custom = {**variables, "range": {"from": start.isoformat(), "to": (now - timedelta(minutes=7)).isoformat()}, "g": "HOUR"}
    window = (await gql_data(client, MARKETPLACE, custom, tenant.viewer_token))["marketplaceMetrics"]
    inside = [(k, p) for s in people for k, at, p in s.events if start <= at < now - timedelta(minutes=7)]
    assert (window["total"]["searches"], window["total"]["views"], window["total"]["conversions"]) == tuple(
        sum(1 for k, _ in inside if k == kind) for kind in ("MARKETPLACE_SEARCHED", "MARKETPLACE_VIEWED", "MARKETPLACE_CONVERTED"))
    assert sum(window["points"]["views"]) == window["total"]["views"]
    design = (await gql_data(client, MARKETPLACE, {**variables, "c": "design"}, tenant.viewer_token))["marketplaceMetrics"]
    want = expected_market(people, "design")
    assert (design["total"]["searches"], design["total"]["views"], design["total"]["conversions"]) == (
        want["searches"], want["views"], want["conversions"])
    assert {s["serviceId"] for s in design["topServices"]} <= {"logo", "banner"}
    assert [step["count"] for step in design["funnel"]] == funnel_counts(people, "design")


async def test_marketplace_metrics_refuse_bad_input_naming_the_field(client, tenant):
    body = await gql(client, MARKETPLACE, {"org": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}, "limit": 0}, token=tenant.viewer_token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "limit"
    body = await gql(client, MARKETPLACE, {"org": tenant.org_id, "range": {"preset": "LAST_7_DAYS"}}, token=tenant.provider_token)
    assert error_codes(body) == ["FORBIDDEN"]


# --------------------------------------------------------------------------- revenue and MRR


def month_start(at: datetime, back: int = 0) -> datetime:
    index = at.year * 12 + at.month - 1 - back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def add_months(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    year, month = index // 12, index % 12 + 1
    for day in (at.day, 30, 29, 28):
        try:
            return at.replace(year=year, month=month, day=min(at.day, day))
        except ValueError:
            continue
    raise AssertionError


INTERVALS = {"month": 1, "quarter": 3, "year": 12}


def reference_mrr(charges: list[tuple[str, str, int, datetime, str]], instant: datetime) -> dict[tuple[str, str], int]:
    """(currency, customer) -> MRR at an instant, from scratch: running charges, amount / months, rounded half up."""
    sums: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for customer, currency, amount, at, interval in charges:
        months = INTERVALS[interval]
        if at <= instant < add_months(at, months):
            sums[(currency, customer)] += Fraction(amount, months)
    rounded = {k: int((v + Fraction(1, 2)) // 1) for k, v in sums.items()}
    return {k: v for k, v in rounded.items() if v > 0}


async def test_revenue_metrics_and_mrr_movements(client, worker, tenant):
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    pid = tenant.profile_id
    m3, m2, m1, m0 = (month_start(now, k) for k in (3, 2, 1, 0))

    def day3(month: datetime) -> datetime:
        return month + timedelta(days=2, hours=10)

    plan = [  # customer, currency, amount, when, interval
        ("alice", "EUR", 1000, day3(m3), "month"), ("alice", "EUR", 1000, day3(m2), "month"), ("alice", "EUR", 1000, day3(m1), "month"),
        ("bob", "EUR", 1000, day3(m3), "month"), ("bob", "EUR", 2500, day3(m2), "month"), ("bob", "EUR", 2000, day3(m1), "month"),
        ("carol", "EUR", 3000, day3(m3), "month"),
        ("dave", "EUR", 500, day3(m3), "month"), ("dave", "EUR", 500, day3(m1), "month"),
        ("erin", "EUR", 12000, day3(m2), "year"),
        ("frank", "USD", 3000, day3(m1), "quarter"),
    ]  # fmt: skip
    if day3(m0) < now - timedelta(minutes=1):
        plan.append(("alice", "EUR", 1000, day3(m0), "month"))
    events = [
        {"eventId": f"{tag}-s{i}", "type": "SUBSCRIPTION_CHARGED", "profileId": pid, "userId": who, "amountMinor": amount, "currency": currency,
         "occurredAt": at.isoformat(), "properties": {"interval": interval, "creatorId": "creator-subs", "takeRateBps": 2000}}
        for i, (who, currency, amount, at, interval) in enumerate(plan)
    ]  # fmt: skip
    # a charge refunded in full does not count towards MRR
    refunded_at = day3(m1) + timedelta(hours=1)
    events += [
        {"eventId": f"{tag}-g", "type": "SUBSCRIPTION_CHARGED", "profileId": pid, "userId": "gina", "amountMinor": 700, "currency": "EUR",
         "occurredAt": refunded_at.isoformat(), "properties": {"orderId": f"{tag}-gina"}},
        {"eventId": f"{tag}-gr", "type": "ORDER_REFUNDED", "amountMinor": 700, "currency": "EUR",
         "occurredAt": (refunded_at + timedelta(hours=1)).isoformat(), "properties": {"originalEventId": f"{tag}-g"}},
        {"eventId": f"{tag}-c1", "type": "MARKETPLACE_CONVERTED", "userId": "henry", "amountMinor": 10_000, "currency": "EUR",
         "occurredAt": (day3(m1) + timedelta(days=1)).isoformat(),
         "properties": {"serviceId": "logo", "orderId": f"{tag}-o1", "creatorId": "creator-ann", "takeRateBps": 1500}},
        {"eventId": f"{tag}-c2", "type": "MARKETPLACE_CONVERTED", "userId": "henry", "amountMinor": 4_000, "currency": "EUR",
         "occurredAt": (day3(m1) + timedelta(days=2)).isoformat(),
         "properties": {"serviceId": "essay", "orderId": f"{tag}-o2", "creatorId": "creator-ben", "platformFeeMinor": 1_000}},
        {"eventId": f"{tag}-c2r", "type": "ORDER_REFUNDED", "amountMinor": 1_000, "currency": "EUR",
         "occurredAt": (day3(m1) + timedelta(days=3)).isoformat(), "properties": {"orderId": f"{tag}-o2"}},
    ]  # fmt: skip
    await publish(client, tenant.service_token, events)
    await worker.drain()

    async with connection() as conn:
        recorded = {r["event_id"]: r for r in await conn.fetch(
            "SELECT event_id, creator_id, platform_fee_minor, status FROM transactions WHERE organization_id = $1", tenant.organization.id)}
    assert (recorded[f"{tag}-c1"]["creator_id"], recorded[f"{tag}-c1"]["platform_fee_minor"]) == ("creator-ann", 1500)
    assert recorded[f"{tag}-c2r"]["creator_id"] == "creator-ben"  # a refund is its sale's creator's
    assert recorded[f"{tag}-s0"]["platform_fee_minor"] == 200 and recorded[f"{tag}-g"]["status"] == "refunded"

    span = {"from": m3.isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}
    found = (await gql_data(client, REVENUE, {"org": tenant.org_id, "range": span, "g": "MONTH"}, tenant.viewer_token))["revenueMetrics"]

    # GMV, take, earnings, transactions, AOV, ARPU from the sales sent
    sales = [(who, cur, amount, (amount * 2000 + 5000) // 10000) for who, cur, amount, _, _ in plan]
    sales += [("gina", "EUR", 700, 0), ("henry", "EUR", 10_000, 1500), ("henry", "EUR", 4_000, 1000)]
    refunds = [("EUR", -700), ("EUR", -1_000)]
    gmv: dict[str, int] = defaultdict(int)
    take: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    customers: dict[str, set[str]] = defaultdict(set)
    for who, cur, amount, fee in sales:
        gmv[cur] += amount
        take[cur] += fee
        count[cur] += 1
        customers[cur].add(f"u:{who}")
    for cur, amount in refunds:
        gmv[cur] += amount
    assert found["gmv"] == money(gmv) and found["take"] == money(take)
    assert found["creatorEarnings"] == money({c: gmv[c] - take[c] for c in gmv})
    assert found["takeRates"] == [{"currency": c, "rate": pytest.approx(take[c] / gmv[c])} for c in sorted(gmv)]
    assert found["transactions"] == sum(count.values())
    assert found["averageOrderValue"] == money({c: round(Fraction(gmv[c], count[c])) for c in gmv})
    assert found["arpu"] == money({c: round(Fraction(gmv[c], len(customers[c]))) for c in gmv})
    assert {s["currency"]: sum(s["gmv"]) for s in found["series"]} == gmv
    creators = {c["creatorId"]: c for c in found["topCreators"]}
    assert creators["creator-ann"]["earnings"] == money({"EUR": 8_500})
    assert creators["creator-ben"]["earnings"] == money({"EUR": 2_000})

    # MRR per month against the from-scratch reference, and the movements by hand for closed months
    charges = [(f"u:{who}", cur, amount, at, interval) for who, cur, amount, at, interval in plan]
    months = [m3, m2, m1, m0]
    # The current month's MRR is measured when the server answered (a charge may have run out since `now`).
    measured = {datetime.fromisoformat(r["month"]): datetime.fromisoformat(r["measuredAt"]) for r in found["mrrMonths"]}
    assert now <= measured[m0] <= datetime.now(UTC)
    snapshots = [m - timedelta(microseconds=1) for m in months[1:]] + [measured[m0]]
    by_month = {(datetime.fromisoformat(r["month"]), r["currency"]): r for r in found["mrrMonths"]}
    previous = reference_mrr(charges, m3 - timedelta(microseconds=1))
    for month, instant in zip(months, snapshots, strict=True):
        current = reference_mrr(charges, instant)
        for currency in {c for c, _ in previous} | {c for c, _ in current}:
            row = by_month[(month, currency)]
            assert row["mrr"] == sum(v for k, v in current.items() if k[0] == currency), (month, currency)
            moved = sum(row[k]["amountMinor"] for k in ("new", "reactivation", "expansion", "contraction", "churn"))
            assert row["mrr"] == row["previousMrr"] + moved
        previous = current
    closed = {(m, c): r for (m, c), r in by_month.items() if m < m0}

    def moves(month: datetime, kind: str) -> list[tuple[str, int, int]]:
        return [(x["customerId"], x["before"], x["after"]) for x in closed[(month, "EUR")][kind]["customers"]]

    assert moves(m3, "new") == [("u:alice", 0, 1000), ("u:bob", 0, 1000), ("u:carol", 0, 3000), ("u:dave", 0, 500)]
    assert closed[(m3, "EUR")]["mrr"] == 5500
    assert moves(m2, "expansion") == [("u:bob", 1000, 2500)] and closed[(m2, "EUR")]["expansion"]["amountMinor"] == 1500
    assert moves(m2, "churn") == [("u:carol", 3000, 0), ("u:dave", 500, 0)] and closed[(m2, "EUR")]["churn"]["amountMinor"] == -3500
    assert moves(m2, "new") == [("u:erin", 0, 1000)]
    assert moves(m1, "contraction") == [("u:bob", 2500, 2000)] and closed[(m1, "EUR")]["contraction"]["amountMinor"] == -500
    assert moves(m1, "reactivation") == [("u:dave", 0, 500)]
    assert closed[(m1, "USD")]["new"]["amountMinor"] == 1000 and closed[(m1, "USD")]["subscribers"] == 1
    assert closed[(m1, "EUR")]["mrr"] == 1000 + 2000 + 500 + 1000  # gina's refunded charge never counts
    last = measured[max(measured)]
    assert found["mrr"] == money({c: v for c, v in {
        "EUR": sum(v for k, v in reference_mrr(charges, last).items() if k[0] == "EUR"),
        "USD": sum(v for k, v in reference_mrr(charges, last).items() if k[0] == "USD")}.items() if v})
