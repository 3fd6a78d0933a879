"""Money end to end: domain events published through the API, recorded in the ledger by the
real outbox worker, reports read back through GraphQL and compared with an independent
computation over the events that were sent (tests/money_ledger.py generates them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from tests.conftest import Tenant, gql

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


async def test_a_refund_before_its_sale_is_linked_when_the_sale_arrives(client, worker, tenant):
    tag = uuid.uuid4().hex[:6]
    await publish(client, tenant, [{"eventId": f"{tag}-r", "type": "ORDER_REFUNDED", "amountMinor": 400, "currency": "USD",
                                    "occurredAt": _at(5), "properties": {"orderId": f"{tag}-1"}}])  # fmt: skip
    await worker.drain()
    assert (await ledger(tenant))[f"{tag}-r"]["refund_of"] is None
    await publish(client, tenant, [{"eventId": f"{tag}-g", "type": "GIFT_PURCHASED", "profileId": tenant.profile_id,
                                    "amountMinor": 900, "currency": "USD", "occurredAt": _at(60),
                                    "properties": {"orderId": f"{tag}-1", "category": "cake"}}])  # fmt: skip
    await worker.drain()
    rows = await ledger(tenant)
    assert rows[f"{tag}-g"]["status"] == "refunded"
    refund = rows[f"{tag}-r"]
    assert (refund["refund_of"], refund["type"], str(refund["profile_id"]), refund["category"]) == (
        f"{tag}-g", "gift", tenant.profile_id, "cake"
    )


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
import csv  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from tests.conftest import error_codes, make_tenant  # noqa: E402

STREAMS = ("booking", "gift", "subscription", "affiliate", "order")
KIND = {"booking": "BOOKING_COMPLETED", "gift": "GIFT_PURCHASED", "subscription": "SUBSCRIPTION_CHARGED",
        "affiliate": "AFFILIATE_COMMISSION", "order": "ORDER_PAID"}  # fmt: skip


def generate(tenant: Tenant, rng: random.Random, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events to publish, expected ledger entries: stream, currency, amount, fees, at, profile) over ~75 days."""
    events: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for n in range(160):
        stream = rng.choice(STREAMS)
        currency = rng.choice(("USD", "EUR", "JPY"))
        amount = rng.randrange(100, 90_000)
        at = now - timedelta(minutes=rng.randrange(10, 75 * 24 * 60))
        profile = rng.choice([tenant.profile_id, str(tenant.other_profile.id)]) if stream != "affiliate" else None
        fees = {"platformFeeMinor": amount // 10, "processorFeeMinor": rng.randrange(0, 50)} if rng.random() < 0.6 else {}
        props: dict[str, Any] = {"orderId": f"o-{n}", **fees}
        if stream == "gift":
            props["category"] = rng.choice(("flowers", "cake", "music"))
        if stream == "booking" and rng.random() < 0.5:
            props["partnerProfileId"] = str(tenant.other_profile.id) if profile == tenant.profile_id else tenant.profile_id
        pending = rng.random() < 0.05
        if pending:
            props["status"] = "pending"
        event = {"eventId": f"gen-{n}", "type": KIND[stream], "amountMinor": amount, "currency": currency,
                 "occurredAt": at.isoformat(), "userId": f"donor-{rng.randrange(12)}", "properties": props}  # fmt: skip
        if profile:
            event["profileId"] = profile
        events.append(event)
        if not pending:
            entries.append({"stream": stream, "currency": currency, "amount": amount, "fees": sum(fees.values()), "at": at,
                            "profile": profile, "gift": stream == "gift", "donor": f"u:donor-{event['userId'][6:]}",
                            "category": props.get("category"), "sale": True})  # fmt: skip
            if rng.random() < 0.2:  # refunded later, often in another day, week or month
                back = min(now - timedelta(minutes=1), at + timedelta(hours=rng.randrange(1, 24 * 40)))
                part = rng.choice((amount, amount // 2))
                events.append({"eventId": f"gen-{n}-r", "type": "ORDER_REFUNDED", "amountMinor": part, "currency": currency,
                               "occurredAt": back.isoformat(), "properties": {"originalEventId": f"gen-{n}"}})  # fmt: skip
                entries.append({**entries[-1], "amount": -part, "fees": 0, "at": back, "sale": False})
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
GIFTS = """query($p: ID, $r: TimeRangeInput!) { giftSummary(profileId: $p, range: $r) { revenue { amountMinor currency } gifts donors }
  topGiftDonors(profileId: $p, range: $r, limit: 3) { donorId gifts } }"""
DUO = """query($p: ID!, $r: TimeRangeInput!) { duoStats(profileId: $p, range: $r) { bookings revenue { amountMinor currency }
  ownShare { amountMinor currency } partnerShare { amountMinor currency } } }"""
CREATE_COST = """mutation($org: ID, $c: CostCategory!, $a: Int!, $cur: String!, $d: Date!, $p: ID) {
  createCost(organizationId: $org, category: $c, amountMinor: $a, currency: $cur, date: $d, profileId: $p) { id } }"""


async def ok(client: Any, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    body = await gql(client, query, variables, token=token)
    assert body.get("errors") is None, body
    return body["data"]


async def test_every_report_matches_a_from_scratch_computation(app, settings, client, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    for seed, tz in ((11, "America/Los_Angeles"), (12, "Asia/Tokyo")):
        tenant = await make_tenant(settings, timezone=tz)
        rng = random.Random(seed)
        events, entries = generate(tenant, rng, now)
        for i in range(0, len(events), 100):
            await publish(client, tenant, events[i : i + 100])
        await worker.drain()
        token, org = tenant.org_admin_token, tenant.org_id
        start = now - timedelta(days=60, hours=7)  # a partial first day and month
        window = {"from": start.isoformat(), "to": now.isoformat()}
        inside = [e for e in entries if start <= e["at"] < now]
        before = [e for e in entries if start - (now - start) <= e["at"] < start]

        summary = (await ok(client, SUMMARY, {"org": org, "r": window}, token))["revenueSummary"]
        assert as_map(summary["total"]) == sums(inside, lambda e: e["currency"])
        assert as_map(summary["previousTotal"]) == sums(before, lambda e: e["currency"])
        assert summary["transactions"] == len(inside)
        for source in summary["bySource"]:
            stream = source["source"].lower()
            assert as_map(source["revenue"]) == sums([e for e in inside if e["stream"] == stream], lambda e: e["currency"])
        assert summary["converted"] is None

        series = (await ok(client, SERIES, {"org": org, "r": window, "g": "MONTH"}, token))["revenueTimeseries"]["points"]
        expected = sums(inside, lambda e: (local_bucket(e["at"], tz, "month"), e["currency"]))
        got = {(max(datetime.fromisoformat(p["start"]), start), m["currency"]): m["amountMinor"] for p in series for m in p["total"]}
        assert got == {(max(k[0], start), k[1]): v for k, v in expected.items()}

        cost_days = [(now - timedelta(days=d)).astimezone(ZoneInfo(tz)).date() for d in (3, 20, 45)]
        cost_rows = [("MARKETING", 12_345, "USD"), ("TOOLS", 5_000, "JPY"), ("OTHER", 777, "EUR")]
        for day, (category, amount, currency) in zip(cost_days, cost_rows, strict=True):
            await ok(client, CREATE_COST, {"org": org, "c": category, "a": amount, "cur": currency, "d": day.isoformat()}, token)
        report = (await ok(client, PNL, {"org": org, "r": window, "g": "MONTH"}, token))["pnl"]
        for line in report["totals"]:
            cur = line["currency"]
            revenue = sum(e["amount"] for e in inside if e["currency"] == cur)
            fees = sum(e["fees"] for e in inside if e["currency"] == cur)
            costs = sum(a for d, (_, a, c) in zip(cost_days, cost_rows, strict=True) if c == cur
                        and start <= datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)) < now)  # fmt: skip
            assert (line["revenue"], line["fees"], line["costs"]) == (revenue, fees, costs), cur
            assert line["grossProfit"] == revenue - fees and line["netProfit"] == revenue - fees - costs
        days = (await ok(client, PNL_DAYS, {"org": org, "r": window}, token))["pnl"]["periods"]
        per_day = {(p["start"], x["currency"]): x["revenue"] for p in days for x in p["lines"] if x["revenue"]}
        want = sums(inside, lambda e: (max(local_bucket(e["at"], tz, "day"), start), e["currency"]))
        assert {(datetime.fromisoformat(k[0]), k[1]): v for k, v in per_day.items()} == {k: v for k, v in want.items() if v}

        # Exports: the same numbers, read back.
        csv_file = (await ok(client, EXPORT, {"org": org, "r": window, "g": "DAY", "f": "CSV"}, token))["pnlExport"]
        rows = list(csv.DictReader(io.StringIO(csv_file["content"])))
        xlsx_file = (await ok(client, EXPORT, {"org": org, "r": window, "g": "DAY", "f": "XLSX"}, token))["pnlExport"]
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

        # A profile: gifts and duo bookings.
        pid = tenant.profile_id
        mine = [e for e in inside if e["profile"] == pid and e["gift"]]
        gifts = await ok(client, GIFTS, {"p": pid, "r": window}, tenant.provider_token)
        assert as_map(gifts["giftSummary"]["revenue"]) == sums(mine, lambda e: e["currency"])
        assert gifts["giftSummary"]["gifts"] == sum(1 for e in mine if e["sale"])
        assert gifts["giftSummary"]["donors"] == len({e["donor"] for e in mine if e["sale"]})
        duo = (await ok(client, DUO, {"p": pid, "r": window}, tenant.provider_token))["duoStats"]
        assert duo["bookings"] >= 0 and as_map(duo["revenue"]).keys() == as_map(duo["ownShare"]).keys()

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
    await ok(client, settings_op, {"cur": "EUR", "rates": [{"currency": "USD", "rate": "0.9"}]}, tenant.org_admin_token)
    window = {"preset": "LAST_7_DAYS"}
    summary = (await ok(client, SUMMARY, {"org": None, "r": window}, tenant.org_admin_token))["revenueSummary"]
    assert summary["converted"] == {"total": None, "missingRates": ["JPY"]}
    await ok(client, settings_op, {"rates": [{"currency": "USD", "rate": "0.9"}, {"currency": "JPY", "rate": "0.0061"}]},
             tenant.org_admin_token)  # fmt: skip
    summary = (await ok(client, SUMMARY, {"org": None, "r": window}, tenant.org_admin_token))["revenueSummary"]
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
    created = await ok(client, CREATE_COST, {"c": "TOOLS", "a": 500, "cur": "EUR", "d": "2026-01-05"}, token)
    cost_id = created["createCost"]["id"]
    await ok(client, "mutation($id: ID!) { updateCost(id: $id, amountMinor: 650) { id } }", {"id": cost_id}, token)
    other = await gql(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": cost_id}, token=other_tenant.org_admin_token)
    assert error_codes(other) == ["NOT_FOUND"]
    await ok(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": cost_id}, token)
    audit = (await ok(client, "query($id: ID) { costAudit(costId: $id) { action before after actor } }", {"id": cost_id}, token))["costAudit"]
    assert [a["action"] for a in audit] == ["created", "updated", "deleted"]
    assert audit[1]["before"]["amountMinor"] == 500 and audit[1]["after"]["amountMinor"] == 650 and audit[2]["after"] is None
