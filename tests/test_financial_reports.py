"""Financial reports end to end: a generated ledger (tests/support/ledger.py) with payouts
that match, mismatch or are missing, invoices paid, unpaid and overdue, published through the
API and drained by the real worker; every report and export compared with a from-scratch
computation over the generated events, to the cent."""

from __future__ import annotations

import base64
import csv
import io
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from openpyxl import load_workbook

from tests.support.graphql import error_codes, gql, gql_data
from tests.support.ledger import GMV_STREAMS, Ledger, generate, month_start, publish
from tests.support.tenants import make_tenant

BY_ORG = """query($r: TimeRangeInput!, $org: ID, $cur: String, $s: OrganizationRevenueSort) {
  revenueByOrganization(range: $r, organizationId: $org, currency: $cur, sort: $s) { range { from to timezone }
  rows { organizationId organizationName currency gmv serviceFees platformFees processorFees net entries lastPaymentAt } } }"""
BY_ORG_FILE = """query($r: TimeRangeInput!, $org: ID, $s: OrganizationRevenueSort, $f: ExportFormat) {
  revenueByOrganizationExport(range: $r, organizationId: $org, sort: $s, format: $f) { filename contentType encoding content } }"""
MONTHLY = """query($r: TimeRangeInput!, $org: ID) { monthlySummary(range: $r, organizationId: $org) {
  months { start end lines { currency gross fees costs netProfit } } totals { currency gross fees costs netProfit } } }"""
MONTHLY_FILE = """query($r: TimeRangeInput!, $org: ID, $f: ExportFormat) {
  monthlySummaryExport(range: $r, organizationId: $org, format: $f) { filename contentType encoding content } }"""
PAYOUTS = """query($r: TimeRangeInput!, $org: ID, $st: [PayoutStatus!]) { payoutReconciliation(range: $r, organizationId: $org, statuses: $st) {
  discrepancies rows { payoutId currency paidMinor expectedMinor differenceMinor entries status discrepancy settledAt } } }"""
INVOICES = """query($org: ID) { outstandingInvoices(organizationId: $org) { today
  groups { organizationId dueDate overdue currency amountMinor invoices }
  invoices { organizationId invoiceId dueDate amount { amountMinor currency } overdue daysOverdue } } }"""
CREATE_COST = """mutation($c: CostCategory!, $a: Int!, $cur: String!, $d: Date!) {
  createCost(category: $c, amountMinor: $a, currency: $cur, date: $d) { id } }"""


def expected_payouts(ledger: Ledger) -> dict[tuple[str, str], int]:
    """(payoutId, currency) -> the sales' amounts net of fees (refunded sales included)."""
    out: dict[tuple[str, str], int] = {}
    for e in ledger.entries:
        if e.sale and e.payout_id:
            key = (e.payout_id, e.currency)
            out[key] = out.get(key, 0) + e.amount - e.fees
    return out


def payout_events(ledger: Ledger, now: datetime) -> list[dict[str, Any]]:
    """po-A pays exactly, po-B 123 minor units too much, po-C never settles, po-D pays nothing known."""
    events = []
    for (payout, currency), amount in sorted(expected_payouts(ledger).items()):
        if payout in ("po-A", "po-B"):
            events.append({"eventId": f"pay-{payout}-{currency}", "type": "PAYOUT_SETTLED", "currency": currency,
                           "amountMinor": amount + (123 if payout == "po-B" else 0), "occurredAt": (now - timedelta(hours=2)).isoformat(),
                           "properties": {"payoutId": payout}})  # fmt: skip
    events.append({"eventId": "pay-po-D", "type": "PAYOUT_SETTLED", "currency": "EUR", "amountMinor": 5000,
                   "occurredAt": (now - timedelta(hours=1)).isoformat(), "properties": {"payoutId": "po-D"}})  # fmt: skip
    return events


def invoice_events(now: datetime) -> list[dict[str, Any]]:
    today = now.date()

    def issued(n: int, amount: int, currency: str, due: date) -> dict[str, Any]:
        return {"eventId": f"inv-{n}", "type": "INVOICE_ISSUED", "amountMinor": amount, "currency": currency,
                "occurredAt": (now - timedelta(days=40)).isoformat(), "properties": {"invoiceId": f"INV-{n}", "dueDate": due.isoformat()}}  # fmt: skip

    return [
        issued(1, 10_000, "USD", today - timedelta(days=10)),  # overdue
        issued(2, 2_500, "EUR", today - timedelta(days=10)),  # overdue, same due date
        issued(3, 7_000, "JPY", today + timedelta(days=20)),  # due later
        issued(4, 9_999, "USD", today - timedelta(days=3)),  # paid below
        {"eventId": "inv-4-paid", "type": "INVOICE_PAID", "amountMinor": 9_999, "currency": "USD",
         "occurredAt": (now - timedelta(days=1)).isoformat(), "properties": {"invoiceId": "INV-4"}},
    ]  # fmt: skip


async def test_financial_reports_match_a_from_scratch_computation(app, settings, client, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    ledgers = []
    for seed, tz in ((31, "America/New_York"), (32, "Asia/Kolkata")):
        tenant = await make_tenant(settings, timezone=tz)
        ledger = generate(tenant, random.Random(seed), now)
        await publish(client, tenant, ledger.events)
        ledgers.append(ledger)
    await worker.drain()
    for ledger in ledgers:  # payouts and invoices once the ledger is there; one invoice is paid before it is issued
        await publish(client, ledger.tenant, payout_events(ledger, now) + invoice_events(now)[:4])
        await publish(client, ledger.tenant, [{"eventId": "inv-5-paid", "type": "INVOICE_PAID", "amountMinor": 100,
                                               "currency": "EUR", "properties": {"invoiceId": "INV-5"}}])  # fmt: skip
        await worker.drain()
        await publish(client, ledger.tenant, invoice_events(now)[4:] + [
            {"eventId": "inv-5", "type": "INVOICE_ISSUED", "amountMinor": 100, "currency": "EUR",
             "properties": {"invoiceId": "INV-5", "dueDate": "2026-01-01"}}])  # fmt: skip
    await worker.drain()
    admin = ledgers[0].tenant.admin_token
    start = now - timedelta(days=70, hours=9)  # partial first month
    window = {"from": start.isoformat(), "to": now.isoformat()}
    mine = {ledger.tenant.org_id: ledger for ledger in ledgers}

    # Revenue by organization, platform-wide: our organizations' rows, to the cent.
    report = (await gql_data(client, BY_ORG, {"r": window}, admin))["revenueByOrganization"]
    assert report["range"]["timezone"] == "UTC"
    rows = [r for r in report["rows"] if r["organizationId"] in mine]
    assert {(r["organizationId"], r["currency"]): r for r in rows} == expected_by_org(ledgers, start, now)
    gmvs = [r["gmv"] for r in report["rows"]]
    assert gmvs == sorted(gmvs, reverse=True)
    by_name = (await gql_data(client, BY_ORG, {"r": window, "s": {"field": "ORGANIZATION_NAME", "direction": "ASC"}}, admin))
    names = [r["organizationName"] for r in by_name["revenueByOrganization"]["rows"]]
    assert names == sorted(names)
    eur = (await gql_data(client, BY_ORG, {"r": window, "cur": "EUR"}, admin))["revenueByOrganization"]["rows"]
    assert {r["currency"] for r in eur} == {"EUR"}
    csv_file = (await gql_data(client, BY_ORG_FILE, {"r": window, "f": "CSV"}, admin))["revenueByOrganizationExport"]
    assert csv_file["contentType"] == "text/csv" and csv_file["filename"].endswith(".csv")
    read = [r for r in csv.DictReader(io.StringIO(csv_file["content"])) if r["organization_id"] in mine]
    assert len(read) == len(rows)
    for row in read:
        api = next(r for r in rows if (r["organizationId"], r["currency"]) == (row["organization_id"], row["currency"]))
        for key, name in (("gmv", "gmv"), ("service_fees", "serviceFees"), ("platform_fees", "platformFees"),
                          ("processor_fees", "processorFees"), ("net", "net"), ("entries", "entries")):  # fmt: skip
            assert int(row[key]) == api[name], key
    xlsx = (await gql_data(client, BY_ORG_FILE, {"r": window, "f": "XLSX"}, admin))["revenueByOrganizationExport"]
    sheet = list(load_workbook(io.BytesIO(base64.b64decode(xlsx["content"]))).worksheets[0].iter_rows(values_only=True))
    assert [list(v) for v in sheet[1:] if v[0] in mine] == [[int(x) if x.lstrip("-").isdigit() else (x or None) for x in r.values()]
                                                           for r in read]  # fmt: skip

    for ledger in ledgers:
        await check_monthly(client, admin, ledger, start, now)
        await check_payouts(client, admin, ledger, now)
        await check_invoices(client, admin, ledger, now)


def expected_by_org(ledgers: list[Ledger], start: datetime, end: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for ledger in ledgers:
        org = ledger.tenant
        for currency in {e.currency for e in ledger.entries}:
            inside = [e for e in ledger.entries if e.currency == currency and start <= e.at < end]
            if not inside:
                continue
            platform, service, processor = (sum(getattr(e, k) for e in inside) for k in ("platform", "service", "processor"))
            last = max((e.at for e in inside if e.sale), default=None)
            out[(org.org_id, currency)] = {
                "organizationId": org.org_id, "organizationName": org.organization.name, "currency": currency,
                "gmv": sum(e.amount for e in inside if e.stream in GMV_STREAMS), "serviceFees": service,
                "platformFees": platform, "processorFees": processor, "net": platform + service - processor,
                "entries": len(inside), "lastPaymentAt": last.isoformat() if last else None,
            }  # fmt: skip
    return out


async def check_monthly(client: Any, admin: str, ledger: Ledger, start: datetime, now: datetime) -> None:
    org, token = ledger.tenant.org_id, ledger.tenant.org_admin_token
    cost_rows = [(3, "MARKETING", 12_345, "USD"), (35, "TOOLS", 5_000, "JPY"), (69, "OTHER", 777, "EUR"), (90, "OTHER", 50, "EUR")]
    for days, category, amount, currency in cost_rows:
        day = (now - timedelta(days=days)).date().isoformat()
        await gql_data(client, CREATE_COST, {"c": category, "a": amount, "cur": currency, "d": day}, token)
    window = {"from": start.isoformat(), "to": now.isoformat()}
    summary = (await gql_data(client, MONTHLY, {"r": window, "org": org}, admin))["monthlySummary"]
    got = {(m["start"], x["currency"]): x for m in summary["months"] for x in m["lines"]}
    want: dict[tuple[str, str], dict[str, int]] = {}

    def line(at: datetime, currency: str) -> dict[str, int]:
        key = (max(month_start(at), start).isoformat(), currency)
        return want.setdefault(key, {"currency": currency, "gross": 0, "fees": 0, "costs": 0})

    for e in [e for e in ledger.entries if start <= e.at < now]:
        found = line(e.at, e.currency)
        found["gross"] += e.amount
        found["fees"] += e.fees
    for days, _, amount, currency in cost_rows:
        day = (now - timedelta(days=days)).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if start <= midnight < now:
            line(midnight, currency)["costs"] += amount
    for value in want.values():
        value["netProfit"] = value["gross"] - value["fees"] - value["costs"]
    assert {(datetime.fromisoformat(k[0]).isoformat(), k[1]): v for k, v in got.items()} == want

    for fmt in ("CSV", "XLSX"):
        file = (await gql_data(client, MONTHLY_FILE, {"r": window, "org": org, "f": fmt}, admin))["monthlySummaryExport"]
        if fmt == "CSV":
            table = list(csv.reader(io.StringIO(file["content"])))
        else:
            table = [list(r) for r in load_workbook(io.BytesIO(base64.b64decode(file["content"]))).worksheets[0].iter_rows(values_only=True)]
        assert table[0] == ["month_start", "month_end", "currency", "gross", "fees", "costs", "net_profit"]
        for row in table[1:]:
            key = "total" if row[0] == "total" else (datetime.fromisoformat(row[0]).isoformat(), row[2])
            if key == "total":
                [total] = [t for t in summary["totals"] if t["currency"] == row[2]]
                assert [int(x) for x in row[3:]] == [total[k] for k in ("gross", "fees", "costs", "netProfit")]
            else:
                assert [int(x) for x in row[3:]] == [want[key][k] for k in ("gross", "fees", "costs", "netProfit")], key
        assert len([r for r in table[1:] if r[0] != "total"]) == len(want)


async def check_payouts(client: Any, admin: str, ledger: Ledger, now: datetime) -> None:
    org = ledger.tenant.org_id
    window = {"from": (now - timedelta(days=120)).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}
    report = (await gql_data(client, PAYOUTS, {"r": window, "org": org}, admin))["payoutReconciliation"]
    expected = expected_payouts(ledger)
    want = {}
    for (payout, currency), amount in expected.items():
        paid = amount + 123 if payout == "po-B" else amount if payout == "po-A" else None
        status = {"po-A": "MATCHED", "po-B": "AMOUNT_MISMATCH", "po-C": "UNPAID"}[payout]
        entries = sum(1 for e in ledger.entries if e.sale and e.payout_id == payout and e.currency == currency)
        want[(payout, currency)] = (paid, amount, (paid or 0) - amount, entries, status, status != "MATCHED")
    want[("po-D", "EUR")] = (5000, None, 5000, 0, "UNMATCHED_PAYOUT", True)
    got = {(r["payoutId"], r["currency"]): (r["paidMinor"], r["expectedMinor"], r["differenceMinor"], r["entries"],
                                            r["status"], r["discrepancy"]) for r in report["rows"]}  # fmt: skip
    assert got == want
    assert report["discrepancies"] == sum(1 for v in want.values() if v[5])
    assert [r["discrepancy"] for r in report["rows"]] == sorted((r["discrepancy"] for r in report["rows"]), reverse=True)
    only = (await gql_data(client, PAYOUTS, {"r": window, "org": org, "st": ["UNPAID", "UNMATCHED_PAYOUT"]}, admin))
    assert {r["status"] for r in only["payoutReconciliation"]["rows"]} == {"UNPAID", "UNMATCHED_PAYOUT"}
    recent = {"from": (now - timedelta(minutes=90)).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}
    late = (await gql_data(client, PAYOUTS, {"r": recent, "org": org}, admin))["payoutReconciliation"]["rows"]
    assert [(r["payoutId"], r["status"]) for r in late] == [("po-D", "UNMATCHED_PAYOUT")]


async def check_invoices(client: Any, admin: str, ledger: Ledger, now: datetime) -> None:
    org = ledger.tenant.org_id
    asked = datetime.now(UTC).date()
    report = (await gql_data(client, INVOICES, {"org": org}, admin))["outstandingInvoices"]
    today = date.fromisoformat(report["today"])
    assert asked <= today <= datetime.now(UTC).date()
    # Due dates count from `now` (invoice_events), days overdue from the server's today: a UTC midnight may lie between.
    due = now.date() - timedelta(days=10)
    late, soon, overdue = due.isoformat(), (now.date() + timedelta(days=20)).isoformat(), (today - due).days
    assert [(g["organizationId"], g["dueDate"], g["overdue"], g["currency"], g["amountMinor"], g["invoices"]) for g in report["groups"]] == [
        (org, late, True, "EUR", 2_500, 1), (org, late, True, "USD", 10_000, 1), (org, soon, False, "JPY", 7_000, 1)
    ]  # fmt: skip
    assert [(i["invoiceId"], i["dueDate"], i["overdue"], i["daysOverdue"], i["amount"]["amountMinor"]) for i in report["invoices"]] == [
        ("INV-1", late, True, overdue, 10_000), ("INV-2", late, True, overdue, 2_500), ("INV-3", soon, False, 0, 7_000)
    ]  # fmt: skip
    assert {i["organizationId"] for i in report["invoices"]} == {org}


async def test_financial_reports_are_for_platform_admins_only(client, tenant):
    window = {"preset": "LAST_7_DAYS"}
    for token in (tenant.org_admin_token, tenant.provider_token, tenant.service_token):
        for query, variables in ((BY_ORG, {"r": window}), (BY_ORG_FILE, {"r": window}), (MONTHLY, {"r": window, "org": tenant.org_id}),
                                 (MONTHLY_FILE, {"r": window}), (PAYOUTS, {"r": window}), (INVOICES, {"org": None})):  # fmt: skip
            assert error_codes(await gql(client, query, variables, token=token)) == ["FORBIDDEN"], query


async def test_invoice_events_and_report_arguments_are_validated(client, tenant):
    bad = [
        {"eventId": "x-1", "type": "INVOICE_ISSUED", "amountMinor": 100, "currency": "EUR", "properties": {"invoiceId": "I", "dueDate": "soon"}},
        {"eventId": "x-2", "type": "INVOICE_ISSUED", "amountMinor": 100, "currency": "EUR", "properties": {"dueDate": "2026-01-01"}},
        {"eventId": "x-3", "type": "INVOICE_PAID", "properties": {"invoiceId": "I"}},
    ]  # fmt: skip
    body = await gql(client, "mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { rejected { field } } }",
                     {"e": bad}, token=tenant.service_token)  # fmt: skip
    assert [r["field"] for r in body["data"]["publishDomainEvents"]["rejected"]] == [
        "properties.dueDate", "properties.invoiceId", "amountMinor"
    ]
    wrong = await gql(client, BY_ORG, {"r": {"preset": "LAST_7_DAYS"}, "cur": "eur"}, token=tenant.admin_token)
    assert wrong["errors"][0]["extensions"]["field"] == "currency"
    wrong = await gql(client, MONTHLY, {"r": {"from": "2026-02-01T00:00:00"}}, token=tenant.admin_token)
    assert wrong["errors"][0]["extensions"]["field"] == "range.from"
