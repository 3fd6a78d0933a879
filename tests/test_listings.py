"""Ticketed events: listing events recorded by the worker, the platform KPIs and the growth
series' status filter, against a plain-Python reading of the generated events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tests.support.graphql import error_codes, gql, gql_data

PUBLISH = "mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"
KPIS = """query($org: ID) { platformKpis(organizationId: $org) { ticketedEvents {
  total liveNow upcomingNext30Days thisMonth averagePerOrganization ticketsSold averageTicketPrice { amountMinor currency } } } }"""
GROWTH = """query($org: ID, $s: ListingStatus) {
  platformGrowth(organizationId: $org, range: {preset: LAST_90_DAYS}, listingStatus: $s) {
    points { start end eventsStarting ticketsSold averageTicketPrice { amountMinor currency } } } }"""


def listing(n: int, now: datetime, rng: random.Random) -> dict[str, Any]:
    starts = now + timedelta(days=rng.uniform(-60, 45)) if n >= 3 else now - timedelta(hours=n + 1)  # 3 on now
    return {"id": f"show-{n}", "title": f"Show {n}", "starts": starts, "ends": starts + timedelta(hours=rng.choice([2, 5, 30])),
            "started": starts + timedelta(minutes=5) if rng.random() < 0.5 and starts < now else None,
            "ended": None}  # fmt: skip


def events_of(listings: list[dict[str, Any]], now: datetime, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events, orders = [], []
    for n, item in enumerate(listings):
        published = item["starts"] - timedelta(days=20)
        events.append({"eventId": f"pub-{n}", "type": "LISTING_PUBLISHED", "occurredAt": min(published, now).isoformat(),
                       "properties": {"listingId": item["id"], "title": item["title"], "startsAt": item["starts"].isoformat(),
                                      "endsAt": item["ends"].isoformat()}})  # fmt: skip
        if item["started"]:
            events.append({"eventId": f"start-{n}", "type": "LISTING_STARTED", "occurredAt": item["started"].isoformat(),
                           "properties": {"listingId": item["id"]}})  # fmt: skip
            if rng.random() < 0.5 and item["started"] + timedelta(hours=1) < now:  # ended early, as reported
                item["ended"] = item["started"] + timedelta(hours=1)
                events.append({"eventId": f"end-{n}", "type": "LISTING_ENDED", "occurredAt": item["ended"].isoformat(),
                               "properties": {"listingId": item["id"]}})  # fmt: skip
        for k in range(rng.randint(0, 4)):
            at = now - timedelta(days=rng.uniform(0, 80))
            order = {"listing": item["id"], "at": at, "quantity": rng.randint(1, 5), "amount": rng.randint(10, 90) * 100,
                     "currency": rng.choice(["EUR", "USD"])}  # fmt: skip
            orders.append(order)
            events.append({"eventId": f"order-{n}-{k}", "type": "ORDER_PAID", "occurredAt": at.isoformat(),
                           "amountMinor": order["amount"], "currency": order["currency"],
                           "properties": {"orderId": f"o-{n}-{k}", "listingId": item["id"], "quantity": order["quantity"]}})  # fmt: skip
    return events, orders


def status(item: dict[str, Any], now: datetime) -> str:
    if (item["ended"] or item["ends"]) <= now:
        return "ended"
    return "live" if (item["started"] or item["starts"]) <= now else "upcoming"


def prices(orders: list[dict[str, Any]]) -> dict[str, int]:
    tickets: dict[str, int] = {}
    amounts: dict[str, int] = {}
    for o in orders:
        tickets[o["currency"]] = tickets.get(o["currency"], 0) + o["quantity"]
        amounts[o["currency"]] = amounts.get(o["currency"], 0) + o["amount"]
    return {c: int((Decimal(amounts[c]) / tickets[c]).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) for c in tickets}


def as_map(money: list[dict[str, Any]]) -> dict[str, int]:
    return {m["currency"]: m["amountMinor"] for m in money}


async def test_ticketed_event_kpis_and_growth_match_the_generated_events(client, tenant, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(5)
    listings = [listing(n, now, rng) for n in range(30)]
    events, orders = events_of(listings, now, rng)
    for i in range(0, len(events), 50):
        body = await gql_data(client, PUBLISH, {"e": events[i : i + 50]}, tenant.service_token)
        assert body["publishDomainEvents"]["rejected"] == [], body
    await worker.drain()

    kpis = (await gql_data(client, KPIS, {"org": tenant.org_id}, tenant.admin_token))["platformKpis"]["ticketedEvents"]
    month = now.replace(day=1, hour=0, minute=0, second=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    statuses = [status(item, now) for item in listings]
    assert kpis["total"] == 30 and kpis["averagePerOrganization"] == 30.0
    assert kpis["liveNow"] == statuses.count("live")
    assert kpis["upcomingNext30Days"] == sum(
        1 for item, s in zip(listings, statuses, strict=True) if s == "upcoming" and item["starts"] <= now + timedelta(days=30))
    assert kpis["thisMonth"] == sum(1 for item in listings if month <= item["starts"] < next_month)
    assert kpis["ticketsSold"] == sum(o["quantity"] for o in orders)
    assert as_map(kpis["averageTicketPrice"]) == prices(orders)
    assert 0 < statuses.count("live") and 0 < statuses.count("ended") and 0 < statuses.count("upcoming")

    by_id = {item["id"]: item for item in listings}
    for wanted in (None, "live", "ended"):
        points = (await gql_data(client, GROWTH, {"org": tenant.org_id, "s": wanted and wanted.upper()},
                                 tenant.admin_token))["platformGrowth"]["points"]  # fmt: skip
        keep = {i for i, item in by_id.items() if wanted is None or status(item, now) == wanted}
        for point in points:
            start, end = datetime.fromisoformat(point["start"]), datetime.fromisoformat(point["end"])
            inside = [o for o in orders if o["listing"] in keep and start <= o["at"] < end]
            assert point["ticketsSold"] == sum(o["quantity"] for o in inside), (wanted, point["start"])
            assert as_map(point["averageTicketPrice"]) == prices(inside), (wanted, point["start"])
            assert point["eventsStarting"] == sum(1 for i in keep if start <= by_id[i]["starts"] < end), (wanted, point["start"])
        assert sum(p["ticketsSold"] for p in points) > 0


async def test_listing_events_are_validated_naming_the_property(client, tenant):
    at = datetime.now(UTC).isoformat()
    bad = [
        {"eventId": "b1", "type": "LISTING_PUBLISHED", "occurredAt": at, "properties": {"title": "No id"}},
        {"eventId": "b2", "type": "LISTING_PUBLISHED", "occurredAt": at,
         "properties": {"listingId": "x", "title": "T", "startsAt": "2026-12-10T20:00:00", "endsAt": "2026-12-10T23:00:00+01:00"}},
        {"eventId": "b3", "type": "LISTING_PUBLISHED", "occurredAt": at,
         "properties": {"listingId": "x", "title": "T", "startsAt": "2026-12-10T20:00:00+01:00", "endsAt": "2026-12-10T19:00:00+01:00"}},
        {"eventId": "b4", "type": "LISTING_ENDED", "occurredAt": at, "properties": {}},
    ]  # fmt: skip
    body = await gql_data(client, PUBLISH, {"e": bad}, tenant.service_token)
    fields = [r["field"] for r in body["publishDomainEvents"]["rejected"]]
    assert fields == ["properties.listingId", "properties.startsAt", "properties.endsAt", "properties.listingId"]
    refused = await gql(client, KPIS, {"org": tenant.org_id}, token=tenant.org_admin_token)
    assert error_codes(refused) == ["FORBIDDEN"]
