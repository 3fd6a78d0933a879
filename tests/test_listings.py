"""Ticketed events (listings) and their tickets, end to end: generated listings and ticket
orders published through the API and drained by the real worker; platformKpis' listing
figures and platformGrowth's ticket series compared with a plain computation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tests.support.graphql import gql, gql_data
from tests.support.ledger import month_start, publish
from tests.support.tenants import make_tenant

KPIS = """query($org: ID) { platformKpis(organizationId: $org) { listings { total liveNow upcomingNext30Days thisMonth
  averagePerOrganization ticketsSold averageTicketPrice { amountMinor currency } } } }"""
GROWTH = """query($org: ID, $s: ListingStatus) { platformGrowth(organizationId: $org, range: {preset: LAST_90_DAYS},
  listingStatus: $s) { listingStatus points { start end ticketsSold averageTicketPrice { amountMinor currency } } } }"""
PUBLISH = "mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { index field } } }"
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field } } }"


def half_even(a: int, b: int) -> int:
    return int((Decimal(a) / Decimal(b)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def generate(rng: random.Random, now: datetime) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Listings in every state (some republished with new times), and ticket orders for them."""
    events: list[dict[str, Any]] = []
    listings: dict[str, dict[str, Any]] = {}
    for n in range(30):
        lid = f"gig-{n}"
        starts = now + timedelta(hours=rng.randrange(-24 * 60, 24 * 60))
        published = now - timedelta(days=70, minutes=n)
        for version in range(rng.choice((1, 1, 2))):
            starts = now + timedelta(hours=rng.randrange(-24 * 60, 24 * 60))
            events.append({"eventId": f"{lid}-p{version}", "type": "LISTING_PUBLISHED", "occurredAt": (published + timedelta(hours=version)).isoformat(),
                           "properties": {"listingId": lid, "title": f"Gig {n}", "startsAt": starts.isoformat(),
                                          "endsAt": (starts + timedelta(hours=3)).isoformat()}})  # fmt: skip
        state = rng.choice(("scheduled", "live", "ended"))
        if state != "scheduled":
            events.append({"eventId": f"{lid}-s", "type": "LISTING_STARTED", "occurredAt": (published + timedelta(days=1)).isoformat(),
                           "properties": {"listingId": lid}})  # fmt: skip
        if state == "ended":
            events.append({"eventId": f"{lid}-e", "type": "LISTING_ENDED", "occurredAt": (published + timedelta(days=2)).isoformat(),
                           "properties": {"listingId": lid}})  # fmt: skip
        # what the events say, unless the schedule says more: past its end it is over, past its start live
        if state == "ended" or starts + timedelta(hours=3) <= now:
            state = "ended"
        elif state == "live" or starts <= now:
            state = "live"
        listings[lid] = {"starts": starts, "state": state}
    orders = []
    for n in range(80):
        lid = rng.choice([*listings, None])
        quantity = rng.choice((None, 1, 2, 5))
        props: dict[str, Any] = {"orderId": f"t-{n}"}
        if lid:
            props["listingId"] = lid
        if quantity:
            props["quantity"] = quantity
        at = now - timedelta(minutes=rng.randrange(10, 80 * 24 * 60))
        currency, amount = rng.choice(("EUR", "USD")), rng.randrange(500, 20_000)
        events.append({"eventId": f"t-{n}", "type": "ORDER_PAID", "amountMinor": amount, "currency": currency,
                       "occurredAt": at.isoformat(), "properties": props})  # fmt: skip
        orders.append({"listing": lid, "tickets": quantity or 1, "currency": currency, "amount": amount, "at": at})
    return events, listings, orders


def ticket_figures(orders: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    tickets: dict[str, int] = {}
    amount: dict[str, int] = {}
    for o in orders:
        tickets[o["currency"]] = tickets.get(o["currency"], 0) + o["tickets"]
        amount[o["currency"]] = amount.get(o["currency"], 0) + o["amount"]
    return sum(tickets.values()), {c: half_even(amount[c], n) for c, n in tickets.items()}


def as_map(money: list[dict[str, Any]]) -> dict[str, int]:
    return {m["currency"]: m["amountMinor"] for m in money}


async def test_listing_kpis_and_ticket_growth_match_a_plain_count(app, settings, client, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = await make_tenant(settings)
    events, listings, orders = generate(random.Random(20), now)
    await publish(client, tenant, events)
    await publish(client, tenant, events[:40])  # the same events again: nothing changes
    await worker.drain()
    admin = tenant.admin_token

    found = (await gql_data(client, KPIS, {"org": tenant.org_id}, admin))["platformKpis"]["listings"]
    this_month, next_month = month_start(now), month_start(month_start(now) + timedelta(days=32))
    sold = [o for o in orders if o["listing"]]
    tickets, price = ticket_figures(sold)
    assert found == {
        "total": len(listings), "liveNow": sum(x["state"] == "live" for x in listings.values()),
        "upcomingNext30Days": sum(x["state"] == "scheduled" and now <= x["starts"] < now + timedelta(days=30) for x in listings.values()),
        "thisMonth": sum(this_month <= x["starts"] < next_month for x in listings.values()),
        "averagePerOrganization": float(len(listings)), "ticketsSold": tickets,
        "averageTicketPrice": found["averageTicketPrice"],
    }  # fmt: skip
    assert as_map(found["averageTicketPrice"]) == price and tickets > 0

    for status in (None, "LIVE", "ENDED"):
        growth = (await gql_data(client, GROWTH, {"org": tenant.org_id, "s": status}, admin))["platformGrowth"]
        assert growth["listingStatus"] == status
        chosen = [o for o in sold if status is None or listings[o["listing"]]["state"] == status.lower()]
        assert sum(p["ticketsSold"] for p in growth["points"]) == ticket_figures(chosen)[0]
        for point in growth["points"]:
            start, end = datetime.fromisoformat(point["start"]), datetime.fromisoformat(point["end"])
            count, prices = ticket_figures([o for o in chosen if start <= o["at"] < end])
            assert (point["ticketsSold"], as_map(point["averageTicketPrice"])) == (count, prices)


async def test_listing_events_are_validated_and_need_a_service_token(app, settings, client):
    tenant = await make_tenant(settings)
    at = datetime.now(UTC).isoformat()
    cases = [
        ({"type": "LISTING_PUBLISHED", "properties": {"listingId": "x", "startsAt": at, "endsAt": at}}, "properties.title"),
        ({"type": "LISTING_PUBLISHED", "properties": {"listingId": "x", "title": "T", "startsAt": "tomorrow", "endsAt": at}}, "properties.startsAt"),
        ({"type": "LISTING_PUBLISHED", "properties": {"listingId": "x", "title": "T", "startsAt": at, "endsAt": at}}, "properties.endsAt"),
        ({"type": "LISTING_STARTED", "properties": {}}, "properties.listingId"),
        ({"type": "ORDER_PAID", "amountMinor": 100, "currency": "EUR", "properties": {"listingId": "x", "quantity": 0}}, "properties.quantity"),
        ({"type": "ORDER_PAID", "amountMinor": 100, "currency": "EUR", "properties": {"listingId": 7}}, "properties.listingId"),
    ]  # fmt: skip
    events = [dict(e, eventId=f"bad-{i}") for i, (e, _) in enumerate(cases)]
    body = await gql(client, PUBLISH, {"e": events}, token=tenant.service_token)
    rejected = body["data"]["publishDomainEvents"]["rejected"]
    assert [r["field"] for r in rejected] == [f for _, f in cases]
    tracked = [{"type": "listing.started", "properties": {"listingId": "x"}}]
    body = await gql(client, TRACK, {"e": tracked}, token=tenant.ingestion_key)
    assert body["data"]["trackEvents"]["rejected"] == [{"index": 0, "field": "type"}]


PEOPLE = """query($org: ID) { platformKpis(organizationId: $org) { people { users creators brands providers } } }
"""
PROFILES = "query($org: ID) { profiles(organizationId: $org) { name kind } }"


async def test_platform_kpis_count_users_and_profiles_by_kind(app, settings, client):
    from app.errors import BadInput
    from app.services import organizations as orgs

    tenant = await make_tenant(settings)  # 2 provider profiles; members: an org admin, a provider and a viewer
    await orgs.create_profile(organization=tenant.organization, name="Cara Creator", kind="creator")
    for name in ("Kiln Brand", "Glaze Brand"):
        await orgs.create_profile(organization=tenant.organization, name=name, kind="brand")
    try:
        await orgs.create_profile(organization=tenant.organization, name="Nobody", kind="sponsor")
        raise AssertionError("an unknown kind was accepted")
    except BadInput as refused:
        assert refused.field == "kind"
    found = (await gql_data(client, PEOPLE, {"org": tenant.org_id}, tenant.admin_token))["platformKpis"]["people"]
    assert found == {"users": 3, "creators": 1, "brands": 2, "providers": 2}
    kinds = (await gql_data(client, PROFILES, {"org": tenant.org_id}, tenant.admin_token))["profiles"]
    assert sorted((p["name"], p["kind"]) for p in kinds) == [
        ("Ada Provider", "PROVIDER"), ("Bea Creator", "PROVIDER"), ("Cara Creator", "CREATOR"),
        ("Glaze Brand", "BRAND"), ("Kiln Brand", "BRAND"),
    ]  # fmt: skip
    everything = (await gql_data(client, PEOPLE, {"org": None}, tenant.admin_token))["platformKpis"]["people"]
    assert everything["users"] >= 4 and everything["brands"] >= 2
