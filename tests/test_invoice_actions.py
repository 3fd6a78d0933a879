"""Platform admins settle invoices by hand: an invoice paid by bank transfer is marked paid
(it leaves the outstanding invoices, and the host platform's late invoice.paid changes
nothing), and an unpaid one is reminded to the organization, whose webhook receiver and
inbox (real local servers) get its amount, due date and days overdue. Both are audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest_asyncio

from app.services.notifications import sender
from app.settings import Settings, override_settings
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.receivers import SmtpReceiver
from tests.support.settings import settings_with
from tests.support.tenants import Tenant

PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
MARK_PAID = """mutation($org: ID!, $inv: String!, $r: String!, $at: DateTime) {
  markInvoicePaid(organizationId: $org, invoiceId: $inv, reason: $r, paidAt: $at) {
    organizationId invoiceId amount { amountMinor currency } dueDate status paidAt paidManually daysOverdue } }"""
REMIND = """mutation($org: ID!, $inv: String!) { sendInvoiceReminder(organizationId: $org, invoiceId: $inv) {
  daysOverdue deliveries invoice { invoiceId status } } }"""
OUTSTANDING = "query($org: ID) { outstandingInvoices(organizationId: $org) { invoices { invoiceId } } }"
AUDIT = """query($org: ID, $action: String) { auditLog(organizationId: $org, action: $action) {
  action target role before after reason } }"""
CHANNEL = """mutation($kind: NotificationChannelKind!, $name: String!, $url: String, $recipients: [String!]) {
  createNotificationChannel(kind: $kind, name: $name, url: $url, recipients: $recipients, kinds: ["invoice.reminder"]) {
    channel { id } } }"""


@pytest_asyncio.fixture(scope="module")
async def local_settings(app: Any, settings: Settings, smtp: SmtpReceiver) -> AsyncIterator[Settings]:
    """Local receivers allowed: the app and the sender run with these."""
    local = settings_with(
        settings, notification_allow_private=True, notification_allow_http=True, notification_timeout_seconds=2.0,
        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False, smtp_from="billing@pulsegraph.test",
    )  # fmt: skip
    app.state.settings = local
    override_settings(local)
    yield local
    app.state.settings = settings
    override_settings(settings)


async def issue(client: Any, worker: Any, tenant: Tenant, amount: int, due: date) -> str:
    invoice = f"INV-{uuid.uuid4().hex[:8]}"
    issued = {"eventId": f"issue-{invoice}", "type": "INVOICE_ISSUED", "amountMinor": amount, "currency": "EUR",
              "occurredAt": (datetime.now(UTC) - timedelta(days=20)).isoformat(),
              "properties": {"invoiceId": invoice, "dueDate": due.isoformat()}}  # fmt: skip
    done = (await gql_data(client, PUBLISH, {"e": [issued]}, tenant.service_token))["publishDomainEvents"]
    assert done["rejected"] == [], done
    await worker.drain()
    return invoice


async def outstanding(client: Any, tenant: Tenant) -> list[str]:
    found = (await gql_data(client, OUTSTANDING, {"org": tenant.org_id}, tenant.admin_token))["outstandingInvoices"]
    return [i["invoiceId"] for i in found["invoices"]]


async def test_a_platform_admin_marks_an_invoice_paid_once(client, worker, tenant) -> None:
    today = datetime.now(UTC).date()
    invoice = await issue(client, worker, tenant, 12_900, today - timedelta(days=4))
    org, admin = tenant.org_id, tenant.admin_token
    variables = {"org": org, "inv": invoice, "r": "Bank transfer ref 8841"}
    body = await gql(client, MARK_PAID, {**variables, "at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "paidAt"
    paid_at = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    paid = (await gql_data(client, MARK_PAID, {**variables, "at": paid_at.isoformat()}, admin))["markInvoicePaid"]
    assert datetime.fromisoformat(paid.pop("paidAt")) == paid_at
    assert paid == {"organizationId": org, "invoiceId": invoice, "amount": {"amountMinor": 12_900, "currency": "EUR"},
                    "dueDate": (today - timedelta(days=4)).isoformat(), "status": "PAID", "paidManually": True,
                    "daysOverdue": 0}  # fmt: skip
    assert invoice not in await outstanding(client, tenant)

    again = await gql(client, MARK_PAID, variables, token=admin)
    assert error_codes(again) == ["BAD_USER_INPUT"] and again["errors"][0]["extensions"]["field"] == "invoiceId"
    assert "already paid" in again["errors"][0]["message"]
    unknown = await gql(client, MARK_PAID, {**variables, "inv": "INV-NEVER-ISSUED"}, token=admin)
    assert error_codes(unknown) == ["NOT_FOUND"] and unknown["errors"][0]["extensions"]["field"] == "invoiceId"
    blank = await gql(client, MARK_PAID, {**variables, "r": "  "}, token=admin)
    assert error_codes(blank) == ["BAD_USER_INPUT"] and blank["errors"][0]["extensions"]["field"] == "reason"
    assert error_codes(await gql(client, MARK_PAID, variables, token=tenant.org_admin_token)) == ["FORBIDDEN"]

    # the host platform's own invoice.paid, arriving later, changes nothing: the first payment wins
    late = {"eventId": f"paid-{invoice}", "type": "INVOICE_PAID", "amountMinor": 12_900, "currency": "EUR",
            "properties": {"invoiceId": invoice}}  # fmt: skip
    await gql_data(client, PUBLISH, {"e": [late]}, tenant.service_token)
    await worker.drain()
    assert (await gql(client, MARK_PAID, variables, token=admin))["errors"][0]["extensions"]["field"] == "invoiceId"

    [entry] = (await gql_data(client, AUDIT, {"org": org, "action": "invoice.marked_paid"}, admin))["auditLog"]
    assert (entry["target"], entry["role"], entry["reason"]) == (invoice, "admin", "Bank transfer ref 8841")
    assert (entry["before"]["paid"], entry["after"]["paid"], entry["after"]["amount_minor"]) == (False, True, 12_900)
    assert entry["after"]["paid_at"].startswith(paid_at.date().isoformat())


async def test_a_reminder_reaches_the_organizations_webhook_and_inbox(
    client, worker, tenant, other_tenant, local_settings, smtp, receiver,
) -> None:  # fmt: skip
    due = datetime.now(UTC).date() - timedelta(days=6)
    invoice = await issue(client, worker, tenant, 7_450, due)
    org, admin = tenant.org_id, tenant.admin_token
    await gql_data(client, CHANNEL, {"kind": "WEBHOOK", "name": "Billing hook", "url": receiver.url + "/billing"},
                   tenant.org_admin_token)  # fmt: skip
    await gql_data(client, CHANNEL, {"kind": "EMAIL", "name": "Accounts", "recipients": ["accounts@tenant.test"]},
                   tenant.org_admin_token)  # fmt: skip
    await gql_data(client, CHANNEL, {"kind": "WEBHOOK", "name": "Not theirs", "url": receiver.url + "/other"},
                   other_tenant.org_admin_token)  # fmt: skip

    asked = datetime.now(UTC).date()
    sent = (await gql_data(client, REMIND, {"org": org, "inv": invoice}, admin))["sendInvoiceReminder"]
    days = sent["daysOverdue"]  # 6, or 7 once a UTC midnight passed since the due date was set: counted on the server's date
    assert days in {(asked - due).days, (datetime.now(UTC).date() - due).days}
    assert sent == {"daysOverdue": days, "deliveries": 2, "invoice": {"invoiceId": invoice, "status": "OUTSTANDING"}}
    await sender.send_due(local_settings)

    expected = {"invoiceId": invoice, "amountMinor": 7_450, "currency": "EUR",
                "dueDate": due.isoformat(), "daysOverdue": days}  # fmt: skip
    [hook] = [r for r in receiver.received if orjson.loads(r.body)["data"].get("invoiceId") == invoice]
    assert hook.path == "/hooks/pulsegraph/billing"
    assert orjson.loads(hook.body)["type"] == "invoice.reminder" and orjson.loads(hook.body)["data"] == expected
    [(recipients, message)] = [(to, m) for to, m in smtp.messages if invoice in m.get_content()]
    assert recipients == ["accounts@tenant.test"] and "invoice.reminder" in message["Subject"]
    assert "amountMinor: 7450" in message.get_content() and f"daysOverdue: {days}" in message.get_content()

    [entry] = (await gql_data(client, AUDIT, {"org": org, "action": "invoice.reminder_sent"}, admin))["auditLog"]
    assert (entry["target"], entry["role"], entry["after"]) == (invoice, "admin", {**expected, "deliveries": 2})

    await gql_data(client, MARK_PAID, {"org": org, "inv": invoice, "r": "Paid after the reminder"}, admin)
    refused = await gql(client, REMIND, {"org": org, "inv": invoice}, token=admin)
    assert error_codes(refused) == ["BAD_USER_INPUT"] and refused["errors"][0]["extensions"]["field"] == "invoiceId"
    assert error_codes(await gql(client, REMIND, {"org": org, "inv": "INV-NEVER-ISSUED"}, token=admin)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, REMIND, {"org": org, "inv": invoice}, token=tenant.org_admin_token)) == ["FORBIDDEN"]
