"""Money end to end: domain events published through the API, recorded in the ledger by the
real outbox worker, reports read back through GraphQL and compared with an independent
computation over the events that were sent (`generate` below makes them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.database import connection
from tests.support.graphql import gql, gql_data
from tests.support.tenants import Tenant

PUBLISH = """
mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted duplicates rejected { index field reason } }
}"""


async def publish(client: Any, tenant: Tenant, events: list[dict[str, Any]], *, duplicates: int = 0) -> dict[str, Any]:
    body = await gql(client, PUBLISH, {"e": events}, token=tenant.service_token)
    assert body.get("errors") is None, body
    result = body["data"]["publishDomainEvents"]
    assert result["rejected"] == [] and result["duplicates"] == duplicates, result
    return result


async def ledger(tenant: Tenant) -> dict[str, dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch("SELECT * FROM transactions WHERE organization_id = $1", tenant.organization.id)
    return {r["event_id"]: dict(r) for r in rows}


def _at(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


async def test_the_worker_records_each_money_event_once(client, worker, tenant):
    tag = uuid.uuid4().hex[:6]
    pid, partner = tenant.profile_id, str(tenant.other_profile.id)
    events = [
        {"eventId": f"{tag}-b", "type": "BOOKING_COMPLETED", "profileId": pid, "amountMinor": 10_000, "currency": "EUR",
         "userId": "cust-1", "occurredAt": _at(50),
         "properties": {"partnerProfileId": partner, "splitPercent": 60, "platformFeeMinor": 1000, "processorFeeMinor": 290}},
        {"eventId": f"{tag}-g", "type": "GIFT_PURCHASED", "profileId": pid, "amountMinor": 500, "currency": "EUR",
         "anonymousId": "anon-9", "occurredAt": _at(40), "properties": {"category": "flowers"}},
        {"eventId": f"{tag}-s", "type": "SUBSCRIPTION_CHARGED", "profileId": pid, "amountMinor": 999, "currency": "USD",
         "occurredAt": _at(30), "properties": {"status": "pending"}},
        {"eventId": f"{tag}-a", "type": "AFFILIATE_COMMISSION", "amountMinor": 250, "currency": "USD", "occurredAt": _at(30)},
        {"eventId": f"{tag}-o", "type": "ORDER_PAID", "amountMinor": 3000, "currency": "JPY", "userId": "cust-2",
         "occurredAt": _at(20), "properties": {"orderId": f"{tag}-order"}},
        {"eventId": f"{tag}-r", "type": "ORDER_REFUNDED", "amountMinor": 1000, "currency": "JPY",
         "occurredAt": _at(10), "properties": {"orderId": f"{tag}-order"}},
        {"eventId": f"{tag}-f", "type": "PAYMENT_FAILED", "amountMinor": 777, "currency": "EUR", "userId": "cust-3", "occurredAt": _at(5)},
        {"eventId": f"{tag}-f0", "type": "PAYMENT_FAILED", "userId": "cust-3", "occurredAt": _at(5)},
        {"eventId": f"{tag}-p", "type": "PAYOUT_SETTLED", "amountMinor": 5000, "currency": "EUR", "occurredAt": _at(1),
         "properties": {"payoutId": "po-1"}},
    ]  # fmt: skip
    await publish(client, tenant, events)
    await worker.drain()
    rows = await ledger(tenant)
    assert set(rows) == {f"{tag}-{k}" for k in ("b", "g", "s", "a", "o", "r", "f")}
    booking = rows[f"{tag}-b"]
    assert (booking["type"], booking["status"], booking["amount_minor"], booking["currency"]) == ("booking", "completed", 10_000, "EUR")
    assert (str(booking["partner_profile_id"]), booking["split_percent"], booking["customer_id"]) == (partner, 60, "u:cust-1")
    assert (booking["platform_fee_minor"], booking["service_fee_minor"], booking["processor_fee_minor"]) == (1000, 0, 290)
    gift = rows[f"{tag}-g"]
    assert (gift["type"], gift["category"], gift["customer_id"]) == ("gift", "flowers", "a:anon-9")
    assert rows[f"{tag}-s"]["status"] == "pending"
    assert (rows[f"{tag}-a"]["type"], rows[f"{tag}-a"]["profile_id"]) == ("affiliate", None)
    assert rows[f"{tag}-o"]["status"] == "refunded" and rows[f"{tag}-o"]["amount_minor"] == 3000
    refund = rows[f"{tag}-r"]
    assert (refund["is_refund"], refund["amount_minor"], refund["refund_of"], refund["type"]) == (True, -1000, f"{tag}-o", "order")
    assert (rows[f"{tag}-f"]["status"], rows[f"{tag}-f"]["amount_minor"]) == ("failed", 777)
    async with connection() as conn:
        payouts = await conn.fetch("SELECT payout_id, amount_minor FROM payouts WHERE organization_id = $1", tenant.organization.id)
    assert [tuple(p) for p in payouts] == [("po-1", 5000)]

    # Publishing again changes nothing; so does the worker re-running events it already recorded.
    await publish(client, tenant, events, duplicates=len(events))
    async with connection() as conn:
        await conn.execute("UPDATE outbox SET processed_at = NULL WHERE organization_id = $1", tenant.organization.id)
    await worker.drain()
    assert await ledger(tenant) == rows


LINKED_REVENUE = """query($org: ID, $p: ID, $r: TimeRangeInput!) {
  org: revenueSummary(organizationId: $org, range: $r) { bySource { source revenue { amountMinor currency } } }
  own: revenueSummary(profileId: $p, range: $r) { total { amountMinor currency } transactions } }"""


def _refund_pair(tag: str, tenant: Tenant, link: str, amount: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A 24,300 JPY booking and a refund naming it by event id or by order id."""
    sale = {"eventId": f"{tag}-sale", "type": "BOOKING_COMPLETED", "profileId": tenant.profile_id, "amountMinor": 24_300,
            "currency": "JPY", "userId": f"{tag}-guest", "occurredAt": _at(60),
            "properties": {"orderId": f"{tag}-order", "category": "suite"}}  # fmt: skip
    names = {"originalEventId": f"{tag}-sale"} if link == "event_id" else {"orderId": f"{tag}-order"}
    refund = {"eventId": f"{tag}-refund", "type": "ORDER_REFUNDED", "amountMinor": amount, "currency": "JPY",
              "occurredAt": _at(5), "properties": names}  # fmt: skip
    return sale, refund


async def _linked_revenue(client: Any, tenant: Tenant) -> dict[str, Any]:
    window = {"from": _at(24 * 60), "to": _at(-1)}
    data = await gql_data(client, LINKED_REVENUE, {"org": str(tenant.organization.id), "p": tenant.profile_id, "r": window},
                    tenant.org_admin_token)  # fmt: skip
    return {"by_source": {s["source"]: as_map(s["revenue"]) for s in data["org"]["bySource"]},
            "own": as_map(data["own"]["total"]), "own_entries": data["own"]["transactions"]}  # fmt: skip


@pytest.mark.parametrize("amount", [24_300, 9_000], ids=["full", "partial"])
@pytest.mark.parametrize("arrival", ["refund_first", "sale_first", "one_batch"])
@pytest.mark.parametrize("link", ["event_id", "order_id"])
async def test_a_refund_is_linked_to_its_sale_whichever_arrives_first(client, worker, tenant, link, arrival, amount):
    """A retried publish can deliver a refund before its sale: once both are in, the ledger and
    every report read the same as when the sale came first, and redelivery changes nothing."""
    tag = uuid.uuid4().hex[:6]
    sale, refund = _refund_pair(tag, tenant, link, amount)
    batches = {"refund_first": [[refund], [sale]], "sale_first": [[sale], [refund]], "one_batch": [[refund, sale]]}[arrival]
    for batch in batches:
        await publish(client, tenant, batch)
        await worker.drain()
        if arrival == "refund_first" and batch is batches[0]:
            assert (await ledger(tenant))[f"{tag}-refund"]["refund_of"] is None
    rows = await ledger(tenant)
    assert rows[f"{tag}-sale"]["status"] == "refunded"
    linked = rows[f"{tag}-refund"]
    assert (linked["refund_of"], linked["type"], str(linked["profile_id"]), linked["category"]) == (
        f"{tag}-sale", "booking", tenant.profile_id, "suite"
    )
    assert (linked["amount_minor"], linked["customer_id"], linked["order_id"]) == (-amount, f"u:{tag}-guest", f"{tag}-order")
    revenue = await _linked_revenue(client, tenant)
    assert revenue == {"by_source": {"BOOKING": {"JPY": 24_300 - amount}}, "own": {"JPY": 24_300 - amount}, "own_entries": 2}

    await publish(client, tenant, [sale, refund], duplicates=2)
    async with connection() as conn:
        await conn.execute("UPDATE outbox SET processed_at = NULL WHERE organization_id = $1", tenant.organization.id)
    await worker.drain()
    assert await ledger(tenant) == rows
    assert await _linked_revenue(client, tenant) == revenue


async def test_an_early_refund_waits_unlinked_and_links_only_to_the_sale_it_names(client, worker, tenant):
    """Before its sale a refund counts under ORDER with no profile; a sale with the same orderId
    but another event id does not take a refund that names its sale by event id."""
    tag = uuid.uuid4().hex[:6]
    sale, refund = _refund_pair(tag, tenant, "event_id", 5_000)
    refund["properties"]["orderId"] = f"{tag}-order"
    await publish(client, tenant, [refund])
    await worker.drain()
    waiting = (await ledger(tenant))[f"{tag}-refund"]
    assert (waiting["refund_of"], waiting["type"], waiting["profile_id"]) == (None, "order", None)
    assert (await _linked_revenue(client, tenant))["by_source"] == {"ORDER": {"JPY": -5_000}}

    impostor = {**sale, "eventId": f"{tag}-other", "amountMinor": 100}
    await publish(client, tenant, [impostor])
    await worker.drain()
    rows = await ledger(tenant)
    assert rows[f"{tag}-refund"]["refund_of"] is None and rows[f"{tag}-other"]["status"] == "completed"

    await publish(client, tenant, [sale])
    await worker.drain()
    rows = await ledger(tenant)
    assert rows[f"{tag}-refund"]["refund_of"] == f"{tag}-sale"
    assert (rows[f"{tag}-sale"]["status"], rows[f"{tag}-other"]["status"]) == ("refunded", "completed")
    assert (await _linked_revenue(client, tenant))["by_source"] == {"BOOKING": {"JPY": 24_300 + 100 - 5_000}}


async def test_money_properties_are_checked_at_ingestion(client, tenant):
    base = {"type": "BOOKING_COMPLETED", "profileId": tenant.profile_id, "amountMinor": 100, "currency": "EUR"}
    bad = [
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"platformFeeMinor": -1}},
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"splitPercent": 100}},
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"partnerProfileId": "nope"}},
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"processorFeeMinor": 1.5}},
        {"eventId": f"x-{uuid.uuid4()}", "type": "AFFILIATE_COMMISSION"},
        {"eventId": f"x-{uuid.uuid4()}", "type": "PAYOUT_SETTLED", "amountMinor": 5, "currency": "eur"},
    ]
    body = await gql(client, PUBLISH, {"e": bad}, token=tenant.service_token)
    result = body["data"]["publishDomainEvents"]
    assert result["accepted"] == 0
    assert [r["field"] for r in result["rejected"]] == [
        "properties.platformFeeMinor", "properties.splitPercent", "properties.partnerProfileId",
        "properties.processorFeeMinor", "amountMinor", "currency",
    ]  # fmt: skip


# -- a generated ledger, every report against a from-scratch computation ------------------------

import base64  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from tests.support.graphql import error_codes  # noqa: E402
from tests.support.tenants import make_tenant  # noqa: E402

STREAMS = ("booking", "gift", "subscription", "affiliate", "order")
KIND = {"booking": "BOOKING_COMPLETED", "gift": "GIFT_PURCHASED", "subscription": "SUBSCRIPTION_CHARGED",
        "affiliate": "AFFILIATE_COMMISSION", "order": "ORDER_PAID"}  # fmt: skip


def generate(
    tenant: Tenant, rng: random.Random, now: datetime, *, third: str, default_split: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events to publish, expected ledger entries: stream, currency, amount, fees, at, profile, duo partner and
    split, donor, category) over ~75 days. Some duo bookings name their split, the others get `default_split`
    (the organization's duoSplitPercent); `third` is a profile only ever booked as a partner."""
    everyone = [tenant.profile_id, str(tenant.other_profile.id), third]
    events: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for n in range(160):
        stream = rng.choice(STREAMS)
        currency = rng.choice(("USD", "EUR", "JPY"))
        amount = rng.randrange(100, 90_000)
        at = now - timedelta(minutes=rng.randrange(10, 75 * 24 * 60))
        profile = rng.choice(everyone[:2]) if stream != "affiliate" else None
        fees = {"platformFeeMinor": amount // 10, "processorFeeMinor": rng.randrange(0, 50)} if rng.random() < 0.6 else {}
        props: dict[str, Any] = {"orderId": f"o-{n}", **fees}
        if stream == "gift":
            props["category"] = rng.choice(("flowers", "cake", "music"))
        if stream == "booking" and rng.random() < 0.7:
            props["partnerProfileId"] = rng.choice([p for p in everyone if p != profile])
            if rng.random() < 0.5:
                props["splitPercent"] = rng.choice((60, 70, 33))
        pending = rng.random() < 0.05
        if pending:
            props["status"] = "pending"
        event = {"eventId": f"gen-{n}", "type": KIND[stream], "amountMinor": amount, "currency": currency,
                 "occurredAt": at.isoformat(), "userId": f"donor-{rng.randrange(12)}", "properties": props}  # fmt: skip
        if profile:
            event["profileId"] = profile
        events.append(event)
        if not pending:
            sale = {"id": event["eventId"], "stream": stream, "currency": currency, "amount": amount,
                    "fees": sum(fees.values()), "at": at, "profile": profile, "gift": stream == "gift",
                    "donor": f"u:{event['userId']}", "category": props.get("category"), "sale": True, "refunded": False,
                    "partner": props.get("partnerProfileId"), "split": props.get("splitPercent", default_split)}  # fmt: skip
            entries.append(sale)
            if rng.random() < 0.2:  # refunded later, often in another day, week or month
                back = min(now - timedelta(minutes=1), at + timedelta(hours=rng.randrange(1, 24 * 40)))
                part = rng.choice((amount, amount // 2))
                events.append({"eventId": f"gen-{n}-r", "type": "ORDER_REFUNDED", "amountMinor": part, "currency": currency,
                               "occurredAt": back.isoformat(), "properties": {"originalEventId": f"gen-{n}"}})  # fmt: skip
                entries.append({**sale, "id": f"gen-{n}-r", "amount": -part, "fees": 0, "at": back, "sale": False})
                sale["refunded"] = True
        if rng.random() < 0.1:
            events.append({"eventId": f"gen-{n}-f", "type": "PAYMENT_FAILED", "amountMinor": amount, "currency": currency,
                           "occurredAt": at.isoformat(), "userId": "card-tester"})  # fmt: skip
    return events, entries


def local_bucket(at: datetime, tz: str, grain: str) -> datetime:
    """Independent of app.timebuckets: the local calendar start of the day / month holding `at`."""
    local = at.astimezone(ZoneInfo(tz))
    day = local.date() if grain == "day" else local.date().replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def sums(entries: list[dict[str, Any]], key: Any) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for e in entries:
        out[key(e)] = out.get(key(e), 0) + e["amount"]
    return {k: v for k, v in out.items()}


def as_map(money_list: list[dict[str, Any]]) -> dict[str, int]:
    return {m["currency"]: m["amountMinor"] for m in money_list}


def add(totals: dict[str, int], currency: str, amount: int) -> None:
    totals[currency] = totals.get(currency, 0) + amount


def booked_share(amount: int, split: int) -> int:
    """The booked profile's share: amount * split / 100 truncated toward zero (refunds are negative)."""
    share = abs(amount) * split // 100
    return share if amount >= 0 else -share


def expected_duo(entries: list[dict[str, Any]], pid: str) -> dict[str, Any]:
    """duoStats of `pid` from the entries: per partner (ranked by bookings, then id) and in total."""
    partners: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e["stream"] != "booking" or e["partner"] is None or pid not in (e["profile"], e["partner"]):
            continue
        other = e["partner"] if e["profile"] == pid else e["profile"]
        booked = booked_share(e["amount"], e["split"])
        own = booked if e["profile"] == pid else e["amount"] - booked
        p = partners.setdefault(other, {"partnerProfileId": other, "bookings": 0, "revenue": {}, "ownShare": {}, "partnerShare": {}})
        p["bookings"] += e["sale"]
        add(p["revenue"], e["currency"], e["amount"])
        add(p["ownShare"], e["currency"], own)
        add(p["partnerShare"], e["currency"], e["amount"] - own)
    ranked = sorted(partners.values(), key=lambda p: (-p["bookings"], p["partnerProfileId"]))
    total: dict[str, Any] = {"bookings": sum(p["bookings"] for p in ranked), "revenue": {}, "ownShare": {}, "partnerShare": {}}
    for p in ranked:
        for key in ("revenue", "ownShare", "partnerShare"):
            for currency, amount in p[key].items():
                add(total[key], currency, amount)
    return {**total, "partners": ranked}


def duo_as_maps(duo: dict[str, Any]) -> dict[str, Any]:
    def maps(x: dict[str, Any]) -> dict[str, Any]:
        return {k: as_map(v) if k in ("revenue", "ownShare", "partnerShare") else v for k, v in x.items()}

    return {**maps({k: v for k, v in duo.items() if k != "partners"}), "partners": [maps(p) for p in duo["partners"]]}


def expected_donors(gifts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """topGiftDonors from gift entries: by gifts bought (then id), revenue refunds subtracted, purchases newest first."""
    donors: dict[str, dict[str, Any]] = {}
    for e in gifts:
        d = donors.setdefault(e["donor"], {"donorId": e["donor"], "gifts": 0, "revenue": {}, "purchases": []})
        add(d["revenue"], e["currency"], e["amount"])
        if e["sale"]:
            d["gifts"] += 1
            d["purchases"].append(e)
    for d in donors.values():
        d["purchases"] = [
            {"eventId": p["id"], "profileId": p["profile"], "donorId": p["donor"], "amount": {"amountMinor": p["amount"],
             "currency": p["currency"]}, "category": p["category"], "refunded": p["refunded"]}
            for p in sorted(d["purchases"], key=lambda p: (p["at"], p["id"]), reverse=True)
        ]  # fmt: skip
    return sorted(donors.values(), key=lambda d: (-d["gifts"], d["donorId"]))


def expected_categories(current: list[dict[str, Any]], previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """giftCategories: gifts bought and revenue per category, against the previous equal period."""

    def fold(gifts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in gifts:
            c = out.setdefault(e["category"], {"gifts": 0, "revenue": {}})
            c["gifts"] += e["sale"]
            add(c["revenue"], e["currency"], e["amount"])
        return out

    now, before = fold(current), fold(previous)
    empty = {"gifts": 0, "revenue": {}}
    ranked = sorted(now.keys() | before.keys(), key=lambda c: (-now.get(c, empty)["gifts"], c))
    return [{"category": c, "gifts": now.get(c, empty)["gifts"], "revenue": now.get(c, empty)["revenue"],
             "previousGifts": before.get(c, empty)["gifts"], "previousRevenue": before.get(c, empty)["revenue"]}
            for c in ranked]  # fmt: skip


def expected_pnl_totals(entries: list[dict[str, Any]], costs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """P&L totals per currency: revenue by stream, fees, costs by category, gross and net profit."""
    lines: dict[str, dict[str, Any]] = {}

    def line(currency: str) -> dict[str, Any]:
        return lines.setdefault(currency, {"revenue": 0, "fees": 0, "costs": 0, "byStream": dict.fromkeys(STREAMS, 0),
                                           "byCategory": dict.fromkeys(COST_CATEGORIES, 0)})  # fmt: skip

    for e in entries:
        x = line(e["currency"])
        x["revenue"] += e["amount"]
        x["fees"] += e["fees"]
        x["byStream"][e["stream"]] += e["amount"]
    for c in costs:
        x = line(c["currency"])
        x["costs"] += c["amount"]
        x["byCategory"][c["category"].lower()] += c["amount"]
    for x in lines.values():
        x["grossProfit"] = x["revenue"] - x["fees"]
        x["netProfit"] = x["grossProfit"] - x["costs"]
    return lines


def pnl_totals(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        line["currency"]: {
            "revenue": line["revenue"], "fees": line["fees"], "costs": line["costs"],
            "grossProfit": line["grossProfit"], "netProfit": line["netProfit"],
            "byStream": {s["stream"].lower(): s["amountMinor"] for s in line["revenueByStream"]},
            "byCategory": {c["category"].lower(): c["amountMinor"] for c in line["costsByCategory"]},
        }  # fmt: skip
        for line in report["totals"]
    }


COST_CATEGORIES = ("marketing", "subscriptions", "tools", "platform_fees", "other")


SUMMARY = """query($org: ID, $p: ID, $r: TimeRangeInput!) { revenueSummary(organizationId: $org, profileId: $p, range: $r) {
  total { amountMinor currency } previousTotal { amountMinor currency } transactions
  bySource { source revenue { amountMinor currency } }
  converted { total { amountMinor currency } missingRates } } }"""
SERIES = """query($org: ID, $r: TimeRangeInput!, $g: Granularity!) { revenueTimeseries(organizationId: $org, range: $r, granularity: $g) {
  points { start total { amountMinor currency } } } }"""
PNL_LINE = "currency revenue fees grossProfit costs netProfit margin revenueByStream { stream amountMinor } costsByCategory { category amountMinor }"
PNL = f"""query($org: ID, $p: ID, $r: TimeRangeInput!, $g: Granularity!) {{ pnl(organizationId: $org, profileId: $p, range: $r, granularity: $g) {{
  totals {{ {PNL_LINE} }} }} }}"""
PNL_DAYS = """query($org: ID, $r: TimeRangeInput!) { pnl(organizationId: $org, range: $r, granularity: DAY) {
  periods { start lines { currency revenue } } } }"""
EXPORT = """query($org: ID, $r: TimeRangeInput!, $g: Granularity!, $f: ExportFormat) {
  pnlExport(organizationId: $org, range: $r, granularity: $g, format: $f) { filename contentType encoding content } }"""
GIFTS = """query($p: ID, $org: ID, $r: TimeRangeInput!, $n: Int!) {
  giftSummary(profileId: $p, organizationId: $org, range: $r) { revenue { amountMinor currency } gifts donors }
  topGiftDonors(profileId: $p, organizationId: $org, range: $r, limit: $n) { donorId gifts revenue { amountMinor currency }
    purchases { eventId profileId donorId amount { amountMinor currency } category refunded } }
  giftCategories(profileId: $p, organizationId: $org, range: $r) { category gifts revenue { amountMinor currency }
    previousGifts previousRevenue { amountMinor currency } } }"""
SHARES = "bookings revenue { amountMinor currency } ownShare { amountMinor currency } partnerShare { amountMinor currency }"
DUO = f"""query($p: ID!, $r: TimeRangeInput!) {{ duoStats(profileId: $p, range: $r) {{ {SHARES}
  partners {{ partnerProfileId {SHARES} }} }} }}"""
COST_SUMMARY = """query($p: ID, $org: ID, $r: TimeRangeInput!) { costSummary(profileId: $p, organizationId: $org, range: $r) {
  total { amountMinor currency } byCategory { category amount { amountMinor currency } } entries } }"""
SETTINGS = "mutation($org: ID, $s: Int) { updateMoneySettings(organizationId: $org, duoSplitPercent: $s) { duoSplitPercent } }"
CREATE_COST = """mutation($org: ID, $c: CostCategory!, $a: Int!, $cur: String!, $d: Date!, $p: ID) {
  createCost(organizationId: $org, category: $c, amountMinor: $a, currency: $cur, date: $d, profileId: $p) { id } }"""


async def test_every_report_matches_a_from_scratch_computation(app, settings, client, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    from app.services import organizations as orgs

    for seed, tz, default_split in ((11, "America/Los_Angeles", None), (12, "Asia/Tokyo", 65)):
        tenant = await make_tenant(settings, timezone=tz)
        third = str((await orgs.create_profile(organization=tenant.organization, name="Cleo Partner")).id)
        if default_split is not None:  # recorded with each booking that names no split
            await gql_data(client, SETTINGS, {"org": tenant.org_id, "s": default_split}, tenant.org_admin_token)
        rng = random.Random(seed)
        events, entries = generate(tenant, rng, now, third=third, default_split=default_split or 50)
        for i in range(0, len(events), 100):
            await publish(client, tenant, events[i : i + 100])
        await worker.drain()
        token, org = tenant.org_admin_token, tenant.org_id
        start = now - timedelta(days=60, hours=7)  # a partial first day and month
        window = {"from": start.isoformat(), "to": now.isoformat()}
        inside = [e for e in entries if start <= e["at"] < now]
        before = [e for e in entries if start - (now - start) <= e["at"] < start]

        summary = (await gql_data(client, SUMMARY, {"org": org, "r": window}, token))["revenueSummary"]
        assert as_map(summary["total"]) == sums(inside, lambda e: e["currency"])
        assert as_map(summary["previousTotal"]) == sums(before, lambda e: e["currency"])
        assert summary["transactions"] == len(inside)
        for source in summary["bySource"]:
            stream = source["source"].lower()
            assert as_map(source["revenue"]) == sums([e for e in inside if e["stream"] == stream], lambda e: e["currency"])
        assert summary["converted"] is None

        series = (await gql_data(client, SERIES, {"org": org, "r": window, "g": "MONTH"}, token))["revenueTimeseries"]["points"]
        expected = sums(inside, lambda e: (local_bucket(e["at"], tz, "month"), e["currency"]))
        got = {(max(datetime.fromisoformat(p["start"]), start), m["currency"]): m["amountMinor"] for p in series for m in p["total"]}
        assert got == {(max(k[0], start), k[1]): v for k, v in expected.items()}

        pid, other = tenant.profile_id, str(tenant.other_profile.id)

        def days_ago(d: int) -> str:
            return (now - timedelta(days=d)).astimezone(ZoneInfo(tz)).date().isoformat()

        costs = [
            {"category": "MARKETING", "amount": 12_345, "currency": "USD", "date": days_ago(3), "profile": None},
            {"category": "TOOLS", "amount": 5_000, "currency": "JPY", "date": days_ago(20), "profile": None},
            {"category": "OTHER", "amount": 777, "currency": "EUR", "date": days_ago(45), "profile": None},
            {"category": "MARKETING", "amount": 2_500, "currency": "EUR", "date": days_ago(10), "profile": pid},
            {"category": "SUBSCRIPTIONS", "amount": 999, "currency": "USD", "date": days_ago(30), "profile": pid},
            {"category": "TOOLS", "amount": 4_000, "currency": "USD", "date": days_ago(15), "profile": other},
            {"category": "OTHER", "amount": 50_000, "currency": "USD", "date": days_ago(70), "profile": pid},  # before
            # the range's first (partial) day: its midnight is before the range starts
            {"category": "PLATFORM_FEES", "amount": 1_111, "currency": "EUR", "date": start.astimezone(ZoneInfo(tz)).date().isoformat(),
             "profile": pid},
        ]  # fmt: skip
        for c in costs:
            await gql_data(client, CREATE_COST, {"org": org, "c": c["category"], "a": c["amount"], "cur": c["currency"], "d": c["date"],
                                           "p": c["profile"]}, token)  # fmt: skip
        counted = [c for c in costs if start <= datetime.fromisoformat(c["date"]).replace(tzinfo=ZoneInfo(tz)) < now]
        assert len(counted) == 6
        report = (await gql_data(client, PNL, {"org": org, "r": window, "g": "MONTH"}, token))["pnl"]
        assert pnl_totals(report) == expected_pnl_totals(inside, counted)
        for line in report["totals"]:
            assert line["margin"] == (round(line["netProfit"] / line["revenue"], 4) if line["revenue"] else None)

        # Costs: by category and currency, in total, entries; a profile's are those carrying it.
        for who, variables, viewer_token in ((None, {"org": org}, token), (pid, {"p": pid}, tenant.provider_token)):
            mine_costs = [c for c in counted if who is None or c["profile"] == who]
            summary_of_costs = (await gql_data(client, COST_SUMMARY, {**variables, "r": window}, viewer_token))["costSummary"]
            by_category: dict[tuple[str, str], int] = {}
            for c in mine_costs:
                by_category[(c["category"], c["currency"])] = by_category.get((c["category"], c["currency"]), 0) + c["amount"]
            assert {(x["category"], x["amount"]["currency"]): x["amount"]["amountMinor"] for x in summary_of_costs["byCategory"]} == by_category
            assert len(summary_of_costs["byCategory"]) == len(by_category)
            assert as_map(summary_of_costs["total"]) == sums(mine_costs, lambda c: c["currency"])
            assert summary_of_costs["entries"] == len(mine_costs)

        # A profile's P&L: the ledger entries booked on it, the costs carrying it.
        profile_report = (await gql_data(client, PNL, {"p": pid, "r": window, "g": "MONTH"}, tenant.provider_token))["pnl"]
        assert pnl_totals(profile_report) == expected_pnl_totals(
            [e for e in inside if e["profile"] == pid], [c for c in counted if c["profile"] == pid]
        )
        days = (await gql_data(client, PNL_DAYS, {"org": org, "r": window}, token))["pnl"]["periods"]
        per_day = {(p["start"], x["currency"]): x["revenue"] for p in days for x in p["lines"] if x["revenue"]}
        want = sums(inside, lambda e: (max(local_bucket(e["at"], tz, "day"), start), e["currency"]))
        assert {(datetime.fromisoformat(k[0]), k[1]): v for k, v in per_day.items()} == {k: v for k, v in want.items() if v}

        # Exports: the same numbers, read back.
        csv_file = (await gql_data(client, EXPORT, {"org": org, "r": window, "g": "DAY", "f": "CSV"}, token))["pnlExport"]
        rows = list(csv.DictReader(io.StringIO(csv_file["content"])))
        xlsx_file = (await gql_data(client, EXPORT, {"org": org, "r": window, "g": "DAY", "f": "XLSX"}, token))["pnlExport"]
        from openpyxl import load_workbook

        sheet = load_workbook(io.BytesIO(base64.b64decode(xlsx_file["content"])))["P&L"]
        values = list(sheet.iter_rows(values_only=True))
        assert len(values) == len(rows) + 1
        for line in report["totals"]:
            [row] = [r for r in rows if r["period_start"] == "total" and r["currency"] == line["currency"]]
            [cells] = [dict(zip(values[0], v, strict=True)) for v in values[1:] if v[0] == "total" and v[2] == line["currency"]]
            for key, field in (("revenue", "revenue"), ("fees", "fees"), ("costs", "costs"), ("net_profit", "netProfit")):
                assert int(row[key]) == cells[key] == line[field]
        period_rows = [r for r in rows if r["period_start"] != "total"]
        assert sum(int(r["revenue"]) for r in period_rows) == sum(x["revenue"] for x in report["totals"])

        # Gifts: a profile's (its provider) and the organization's (its admin).
        for who, variables, viewer_token in ((pid, {"p": pid}, tenant.provider_token), (None, {"org": org}, token)):
            now_gifts = [e for e in inside if e["gift"] and who in (None, e["profile"])]
            before_gifts = [e for e in before if e["gift"] and who in (None, e["profile"])]
            found = await gql_data(client, GIFTS, {**variables, "r": window, "n": 20}, viewer_token)
            assert as_map(found["giftSummary"]["revenue"]) == sums(now_gifts, lambda e: e["currency"])
            assert found["giftSummary"]["gifts"] == sum(1 for e in now_gifts if e["sale"])
            assert found["giftSummary"]["donors"] == len({e["donor"] for e in now_gifts if e["sale"]})
            donors = expected_donors(now_gifts)
            assert [{**d, "revenue": as_map(d["revenue"])} for d in found["topGiftDonors"]] == donors
            assert sum(d["gifts"] for d in donors) == found["giftSummary"]["gifts"] and len(donors) > 3
            top = (await gql_data(client, GIFTS, {**variables, "r": window, "n": 3}, viewer_token))["topGiftDonors"]
            assert [d["donorId"] for d in top] == [d["donorId"] for d in donors[:3]]
            categories = [{**c, "revenue": as_map(c["revenue"]), "previousRevenue": as_map(c["previousRevenue"])}
                          for c in found["giftCategories"]]  # fmt: skip
            assert categories == expected_categories(now_gifts, before_gifts)

        # Duo bookings, from each side, with explicit and default splits.
        duo_bookings = [e for e in inside if e["stream"] == "booking" and e["partner"]]
        splits = {e["split"] for e in duo_bookings}
        assert (default_split or 50) in splits and len(splits & {60, 70, 33}) >= 2
        assert any(not e["sale"] for e in duo_bookings)  # a refund splits too
        for who in (pid, other, third):
            duo = (await gql_data(client, DUO, {"p": who, "r": window}, token))["duoStats"]
            assert duo_as_maps(duo) == expected_duo(inside, who), who
        mine = (await gql_data(client, DUO, {"p": pid, "r": window}, tenant.provider_token))["duoStats"]
        assert [p["partnerProfileId"] for p in mine["partners"]] == [p["partnerProfileId"] for p in expected_duo(inside, pid)["partners"]]
        assert len(mine["partners"]) == 2

        # Providers do not see organization-wide money.
        refused = await gql(client, SUMMARY, {"org": org, "r": window}, token=tenant.provider_token)
        assert error_codes(refused) == ["FORBIDDEN"]


async def test_converted_totals_need_a_rate_for_every_currency(client, worker, tenant):
    tag = uuid.uuid4().hex[:6]
    await publish(client, tenant, [
        {"eventId": f"{tag}-1", "type": "ORDER_PAID", "amountMinor": 1001, "currency": "USD", "occurredAt": _at(30)},
        {"eventId": f"{tag}-2", "type": "ORDER_PAID", "amountMinor": 1500, "currency": "JPY", "occurredAt": _at(20)},
    ])  # fmt: skip
    await worker.drain()
    settings_op = """mutation($cur: String, $rates: [ExchangeRateInput!]) {
      updateMoneySettings(reportingCurrency: $cur, rates: $rates) { reportingCurrency rates { currency rate } } }"""
    await gql_data(client, settings_op, {"cur": "EUR", "rates": [{"currency": "USD", "rate": "0.9"}]}, tenant.org_admin_token)
    window = {"preset": "LAST_7_DAYS"}
    summary = (await gql_data(client, SUMMARY, {"org": None, "r": window}, tenant.org_admin_token))["revenueSummary"]
    assert summary["converted"] == {"total": None, "missingRates": ["JPY"]}
    await gql_data(client, settings_op, {"rates": [{"currency": "USD", "rate": "0.9"}, {"currency": "JPY", "rate": "0.0061"}]},
             tenant.org_admin_token)  # fmt: skip
    summary = (await gql_data(client, SUMMARY, {"org": None, "r": window}, tenant.org_admin_token))["revenueSummary"]
    # 1001 US cents * 0.9 = 900.9 -> 901 euro cents; 1500 yen * 0.0061 = 9.15 EUR = 915 euro cents.
    assert summary["converted"] == {"total": {"amountMinor": 901 + 915, "currency": "EUR"}, "missingRates": []}
    bad = await gql(client, settings_op, {"rates": [{"currency": "USD", "rate": "-1"}]}, token=tenant.org_admin_token)
    assert bad["errors"][0]["extensions"]["field"] == "rates.0.rate"


async def test_costs_are_validated_and_audited(client, tenant, other_tenant):
    token = tenant.org_admin_token
    bad = await gql(client, CREATE_COST, {"c": "TOOLS", "a": 0, "cur": "EUR", "d": "2026-01-05"}, token=token)
    assert bad["errors"][0]["extensions"]["field"] == "amountMinor"
    bad = await gql(client, CREATE_COST, {"c": "TOOLS", "a": 5, "cur": "eur", "d": "2026-01-05"}, token=token)
    assert bad["errors"][0]["extensions"]["field"] == "currency"
    foreign = await gql(client, CREATE_COST, {"c": "TOOLS", "a": 5, "cur": "EUR", "d": "2026-01-05", "p": other_tenant.profile_id}, token=token)
    assert error_codes(foreign) == ["NOT_FOUND"]
    created = await gql_data(client, CREATE_COST, {"c": "TOOLS", "a": 500, "cur": "EUR", "d": "2026-01-05"}, token)
    cost_id = created["createCost"]["id"]
    await gql_data(client, "mutation($id: ID!) { updateCost(id: $id, amountMinor: 650) { id } }", {"id": cost_id}, token)
    other = await gql(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": cost_id}, token=other_tenant.org_admin_token)
    assert error_codes(other) == ["NOT_FOUND"]
    await gql_data(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": cost_id}, token)
    audit = (await gql_data(client, "query($id: ID) { costAudit(costId: $id) { action before after actor } }", {"id": cost_id}, token))["costAudit"]
    assert [a["action"] for a in audit] == ["created", "updated", "deleted"]
    assert audit[1]["before"]["amountMinor"] == 500 and audit[1]["after"]["amountMinor"] == 650 and audit[2]["after"] is None


# -- live gifts and revenue counters over a real websocket --------------------------------------

import time  # noqa: E402

import httpx  # noqa: E402

GIFT_LIVE = """subscription($p: ID!) { giftPurchased(profileId: $p) {
  eventId profileId donorId amount { amountMinor currency } category occurredAt } }"""
COUNTERS_LIVE = """subscription($org: ID) { revenueCounters(organizationId: $org) {
  organizationId since revenue { amountMinor currency } transactions failedPayments } }"""


def money_event(kind: str, tag: str, amount: int | None = None, currency: str | None = None, **fields: Any) -> dict[str, Any]:
    """A domain event that happened a second ago."""
    event = {"eventId": f"{tag}-{uuid.uuid4().hex[:10]}", "type": kind, "occurredAt": _at(0), **fields}
    if amount is not None:
        event |= {"amountMinor": amount, "currency": currency}
    return event


class LiveLedger:
    """Money events sent to a running server, and the counters of today they add up to."""

    def __init__(self, stack: Any, http: httpx.AsyncClient) -> None:
        self.stack, self.http = stack, http
        self.sent: list[tuple[str, dict[str, Any]]] = []  # (organization id, event)

    async def send(self, tenant: Any, events: list[dict[str, Any]]) -> None:
        response = await self.http.post(self.stack.graphql_url, json={"query": PUBLISH, "variables": {"e": events}},
                                        headers={"Authorization": f"Bearer {tenant.service_token}"})  # fmt: skip
        assert response.json()["data"]["publishDomainEvents"]["accepted"] == len(events), response.text
        self.sent += [(tenant.org_id, e) for e in events]

    def counters(self, organization_id: str | None, since: str) -> dict[str, Any]:
        """revenueCounters from the events sent: revenue (refunds negative) and entries counted as
        revenue, failed payments with an amount; pending sales are neither."""
        start = datetime.fromisoformat(since)
        revenue: dict[str, int] = {}
        entries = failed = 0
        for org, e in self.sent:
            at = datetime.fromisoformat(e["occurredAt"])
            if organization_id not in (None, org) or "amountMinor" not in e or not start <= at < start + timedelta(days=1):
                continue
            if e["type"] == "PAYMENT_FAILED":
                failed += 1
            elif e.get("properties", {}).get("status") != "pending":
                add(revenue, e["currency"], -e["amountMinor"] if e["type"] == "ORDER_REFUNDED" else e["amountMinor"])
                entries += 1
        return {"organizationId": organization_id, "since": since, "revenue": revenue, "transactions": entries,
                "failedPayments": failed}  # fmt: skip


def counters_as_maps(pushed: dict[str, Any]) -> dict[str, Any]:
    return {**pushed, "revenue": as_map(pushed["revenue"])}


async def counters_reaching(client: Any, expected: dict[str, Any], seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The first pushed counters with the expected entry and failure counts (each push within the bound)."""
    from tests.support.websockets import WAIT

    while True:
        _, data = await client.data("counters", timeout=WAIT)
        seen.append(data["revenueCounters"])
        counts = (seen[-1]["transactions"], seen[-1]["failedPayments"])
        if counts == (expected["transactions"], expected["failedPayments"]):
            return counters_as_maps(seen[-1])
        assert counts[0] <= expected["transactions"] and counts[1] <= expected["failedPayments"], (seen[-1], expected)


@pytest.mark.usefixtures("server_logs_on_failure")
async def test_live_gifts_and_revenue_counters_over_a_websocket(memory_stack):
    from tests.support.live_views import BARRIER_WAIT
    from tests.support.websockets import WAIT, ws_client

    tenant, other = memory_stack.tenant(), memory_stack.tenant()
    async with (
        httpx.AsyncClient(timeout=WAIT, trust_env=False) as http,
        ws_client(memory_stack, tenant.provider_token) as provider,
        ws_client(memory_stack, tenant.org_admin_token) as admin,
        ws_client(memory_stack, other.org_admin_token) as bystander,
        ws_client(memory_stack, tenant.admin_token) as platform,
    ):
        live = LiveLedger(memory_stack, http)
        await provider.subscribe("gifts", GIFT_LIVE, {"p": tenant.profile_id})
        counters = {"admin": admin, "bystander": bystander, "platform": platform}
        seen: dict[str, list[dict[str, Any]]] = {name: [] for name in counters}
        for client in counters.values():
            await client.subscribe("counters", COUNTERS_LIVE, {})
        for name, client in counters.items():  # the counters of now come first
            seen[name].append((await client.data("counters"))[1]["revenueCounters"])
        assert [seen[n][0]["organizationId"] for n in counters] == [tenant.org_id, other.org_id, None]
        for name in ("admin", "bystander"):  # fresh organizations
            assert (seen[name][0]["revenue"], seen[name][0]["transactions"], seen[name][0]["failedPayments"]) == ([], 0, 0)

        # No subscribe acknowledgement: send warm-up gifts to both organizations until every
        # subscription has pushed once. They are money too: they count in the totals below.
        waiting = {"gifts": provider, **counters}
        deadline = time.monotonic() + BARRIER_WAIT
        while waiting:
            assert time.monotonic() < deadline, f"nothing pushed on {sorted(waiting)} within {BARRIER_WAIT} s"
            await live.send(tenant, [money_event("GIFT_PURCHASED", "warmup", 100, "USD", profileId=tenant.profile_id, userId="warm")])
            await live.send(other, [money_event("GIFT_PURCHASED", "warmup", 100, "USD", profileId=other.profile_id, userId="warm")])
            for name, client in list(waiting.items()):
                op = "gifts" if name == "gifts" else "counters"
                with contextlib.suppress(AssertionError):
                    _, data = await client.data(op, timeout=0.5)
                    if op == "counters":
                        seen[name].append(data["revenueCounters"])
                    del waiting[name]

        # Another organization's money: its admin sees it, nobody of this organization does.
        await live.send(other, [
            money_event("GIFT_PURCHASED", "other", 4_321, "EUR", profileId=other.profile_id, userId="rival"),
            money_event("ORDER_PAID", "other", 90_000, "JPY", userId="rival"),
        ])  # fmt: skip
        since = seen["bystander"][-1]["since"]
        assert await counters_reaching(bystander, live.counters(other.org_id, since), seen["bystander"]) == live.counters(
            other.org_id, since
        )

        # This organization's money: gifts to the profile, a booking, an order partly refunded,
        # a failed payment (with and without amount), a pending subscription.
        gifts = [
            money_event("GIFT_PURCHASED", "gift", 1_234, "USD", profileId=tenant.profile_id, userId="fan-1",
                        properties={"category": "flowers"}),
            money_event("GIFT_PURCHASED", "gift", 500, "JPY", profileId=tenant.profile_id, anonymousId="anon-7"),
        ]  # fmt: skip
        await live.send(tenant, [
            *gifts,
            money_event("GIFT_PURCHASED", "gift", 999, "USD", profileId=tenant.other_profile_id, userId="fan-2"),
            money_event("BOOKING_COMPLETED", "sale", 10_050, "EUR", profileId=tenant.profile_id, userId="fan-1"),
            money_event("ORDER_PAID", "sale", 3_000, "USD", userId="fan-3", properties={"orderId": "live-1"}),
            money_event("ORDER_REFUNDED", "sale", 1_001, "USD", properties={"orderId": "live-1"}),
            money_event("PAYMENT_FAILED", "fail", 777, "EUR", userId="fan-4"),
            money_event("PAYMENT_FAILED", "fail", userId="fan-4"),
            money_event("SUBSCRIPTION_CHARGED", "sale", 1_500, "USD", profileId=tenant.profile_id, properties={"status": "pending"}),
        ])  # fmt: skip

        pushed: dict[str, dict[str, Any]] = {}
        while len(pushed) < len(gifts):
            _, data = await provider.data("gifts", timeout=WAIT)
            gift = data["giftPurchased"]
            assert gift["profileId"] == tenant.profile_id, gift  # never the other profile's, nor the other organization's
            if not gift["eventId"].startswith("warmup"):
                pushed[gift["eventId"]] = {**gift, "occurredAt": datetime.fromisoformat(gift["occurredAt"])}
        assert pushed == {
            g["eventId"]: {"eventId": g["eventId"], "profileId": tenant.profile_id, "donorId": donor,
                           "amount": {"amountMinor": g["amountMinor"], "currency": g["currency"]}, "category": category,
                           "occurredAt": datetime.fromisoformat(g["occurredAt"])}
            for g, donor, category in zip(gifts, ("u:fan-1", "a:anon-7"), ("flowers", "other"), strict=True)
        }  # fmt: skip

        since = seen["admin"][-1]["since"]
        expected = live.counters(tenant.org_id, since)
        assert expected["revenue"]["EUR"] == 10_050 and expected["failedPayments"] == 1
        assert await counters_reaching(admin, expected, seen["admin"]) == expected
        assert {c["organizationId"] for c in seen["admin"]} == {tenant.org_id}  # the other organization's never pushed here
        everywhere = live.counters(None, seen["platform"][-1]["since"])
        assert await counters_reaching(platform, everywhere, seen["platform"]) == everywhere
        late = [m["payload"]["data"]["giftPurchased"] for m in provider.pending("gifts")]
        assert all(g["eventId"].startswith("warmup") and g["profileId"] == tenant.profile_id for g in late), late


@pytest.mark.usefixtures("server_logs_on_failure")
async def test_live_money_is_refused_to_those_who_may_not_read_it(memory_stack):
    from tests.support.websockets import frame_error_codes as frame_codes
    from tests.support.websockets import ws_client

    tenant, other = memory_stack.tenant(), memory_stack.tenant()
    async with (
        ws_client(memory_stack, tenant.provider_token) as provider,
        ws_client(memory_stack, other.org_admin_token) as stranger,
    ):
        await provider.subscribe("colleague", GIFT_LIVE, {"p": tenant.other_profile_id})
        await provider.subscribe("counters", COUNTERS_LIVE, {})
        await provider.subscribe("own-organization", COUNTERS_LIVE, {"org": tenant.org_id})
        await stranger.subscribe("gifts", GIFT_LIVE, {"p": tenant.profile_id})
        await stranger.subscribe("counters", COUNTERS_LIVE, {"org": tenant.org_id})
        assert frame_codes((await provider.frame("colleague")).message) == ["NOT_FOUND"]
        assert frame_codes((await provider.frame("counters")).message) == ["FORBIDDEN"]
        assert frame_codes((await provider.frame("own-organization")).message) == ["FORBIDDEN"]
        assert frame_codes((await stranger.frame("gifts")).message) == ["NOT_FOUND"]
        assert frame_codes((await stranger.frame("counters")).message) == ["NOT_FOUND"]


async def test_a_provider_keeps_their_own_profiles_costs_and_sees_them_in_its_pnl(client, tenant, other_tenant):
    from app.services import organizations as orgs

    provider, pid = tenant.provider_token, tenant.profile_id
    neighbour = str((await orgs.create_profile(organization=tenant.organization, name="Next Door")).id)
    day = datetime.now(UTC).date().isoformat()
    created = await gql_data(client, CREATE_COST, {"c": "MARKETING", "a": 1200, "cur": "EUR", "d": day, "p": pid}, provider)
    cost_id = created["createCost"]["id"]

    # Not another profile's, not the organization's, not another organization's.
    for variables, code in (({"p": neighbour}, "NOT_FOUND"), ({"p": None}, "BAD_USER_INPUT"),
                            ({"p": other_tenant.profile_id}, "NOT_FOUND"), ({"p": pid, "org": other_tenant.org_id}, "NOT_FOUND")):  # fmt: skip
        refused = await gql(client, CREATE_COST, {"c": "TOOLS", "a": 5, "cur": "EUR", "d": day, **variables}, token=provider)
        assert error_codes(refused) == [code], (variables, refused)
    admins = await gql_data(client, CREATE_COST, {"c": "TOOLS", "a": 300, "cur": "EUR", "d": day}, tenant.org_admin_token)
    theirs = await gql_data(client, CREATE_COST, {"c": "TOOLS", "a": 400, "cur": "EUR", "d": day, "p": neighbour}, tenant.org_admin_token)
    for foreign in (admins["createCost"]["id"], theirs["createCost"]["id"]):
        changed = await gql(client, "mutation($id: ID!) { updateCost(id: $id, amountMinor: 1) { id } }", {"id": foreign}, token=provider)
        assert error_codes(changed) == ["NOT_FOUND"]
        deleted = await gql(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": foreign}, token=provider)
        assert error_codes(deleted) == ["NOT_FOUND"]
    moved = await gql(client, "mutation($id: ID!, $p: ID) { updateCost(id: $id, profileId: $p) { id } }",
                      {"id": cost_id, "p": neighbour}, token=provider)  # fmt: skip
    assert error_codes(moved) == ["NOT_FOUND"]

    await gql_data(client, "mutation($id: ID!) { updateCost(id: $id, amountMinor: 1500) { id } }", {"id": cost_id}, provider)
    window = {"from": (datetime.now(UTC) - timedelta(days=2)).isoformat(), "to": (datetime.now(UTC) + timedelta(days=2)).isoformat()}
    summary = (await gql_data(client, COST_SUMMARY, {"p": pid, "r": window}, provider))["costSummary"]
    assert summary["total"] == [{"amountMinor": 1500, "currency": "EUR"}] and summary["entries"] == 1
    pnl = (await gql_data(client, PNL, {"p": pid, "r": window, "g": "MONTH"}, provider))["pnl"]
    (totals,) = pnl["totals"]
    assert (totals["currency"], totals["costs"]) == ("EUR", 1500)
    assert {c["category"]: c["amountMinor"] for c in totals["costsByCategory"] if c["amountMinor"]} == {"MARKETING": 1500}

    await gql_data(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": cost_id}, provider)
    audit = (await gql_data(client, "query($id: ID) { costAudit(costId: $id) { action actor actorRole before after } }",
                            {"id": cost_id}, tenant.org_admin_token))["costAudit"]  # fmt: skip
    assert [a["action"] for a in audit] == ["created", "updated", "deleted"]
    assert {a["actorRole"] for a in audit} == {"provider"}
    assert audit[1]["before"]["amountMinor"] == 1200 and audit[1]["after"]["amountMinor"] == 1500
