"""Financial reports (platform admins only): revenue by organization, monthly summary,
payout reconciliation, outstanding invoices, and their files."""

from __future__ import annotations

from datetime import date as Date
from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Money, ResolvedRange


@strawberry.enum(description="What revenue by organization is sorted by.")
class OrganizationRevenueSortField(Enum):
    ORGANIZATION_NAME = strawberry.enum_value("organization_name", description="Organization name.")
    CURRENCY = strawberry.enum_value("currency", description="Currency code.")
    GMV = strawberry.enum_value("gmv", description="GMV (minor units; rows of different currencies are not converted).")
    SERVICE_FEES = strawberry.enum_value("service_fees", description="Service fees.")
    PLATFORM_FEES = strawberry.enum_value("platform_fees", description="Platform fees.")
    PROCESSOR_FEES = strawberry.enum_value("processor_fees", description="Processor fees.")
    NET = strawberry.enum_value("net", description="Net platform revenue.")
    LAST_PAYMENT_AT = strawberry.enum_value("last_payment_at", description="Latest payment (rows without one last).")


@strawberry.enum(description="Sort direction.")
class SortDirection(Enum):
    ASC = strawberry.enum_value("asc", description="Smallest first.")
    DESC = strawberry.enum_value("desc", description="Largest first.")


@strawberry.input(description="Sort order of revenue by organization; ties keep name, organization id and currency order.")
class OrganizationRevenueSort:
    field: OrganizationRevenueSortField = strawberry.field(
        default=OrganizationRevenueSortField.GMV, description="The column (default GMV)."
    )
    direction: SortDirection = strawberry.field(default=SortDirection.DESC, description="The direction (default DESC).")


@strawberry.type(description="One organization's money in one currency over the range (minor units of `currency`).")
class OrganizationRevenue:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    organization_name: str = strawberry.field(description="Its name.")
    currency: str = strawberry.field(description="ISO 4217 code.")
    gmv: int = strawberry.field(
        description="Completed and refunded booking, gift, subscription and order sales minus their refunds in the range."
    )
    service_fees: int = strawberry.field(description="Service fees of its revenue entries in the range.")
    platform_fees: int = strawberry.field(description="Platform fees of its revenue entries in the range.")
    processor_fees: int = strawberry.field(description="Processor fees of its revenue entries in the range.")
    net: int = strawberry.field(description="Net platform revenue: platformFees + serviceFees - processorFees.")
    entries: int = strawberry.field(description="Revenue entries (sales, refunds, commissions) in the range.")
    last_payment_at: datetime | None = strawberry.field(description="Its latest sale (not refund) in the range.")


@strawberry.type(description="Revenue by organization and currency over a UTC range.")
class RevenueByOrganization:
    range: ResolvedRange = strawberry.field(description="The range covered (UTC).")
    rows: list[OrganizationRevenue] = strawberry.field(description="One row per organization and currency with entries, sorted.")


@strawberry.type(description="One currency's month (minor units of `currency`).")
class MonthlySummaryLine:
    currency: str = strawberry.field(description="ISO 4217 code.")
    gross: int = strawberry.field(
        description="Revenue: completed and refunded sales of every type minus refunds, each in its own month."
    )
    fees: int = strawberry.field(description="Platform + service + processor fees of those entries.")
    costs: int = strawberry.field(description="Cost entries whose date (as a UTC day) lies in the month and range.")
    net_profit: int = strawberry.field(description="gross - fees - costs.")


@strawberry.type(description="One UTC month (or period) of the summary.")
class MonthlySummaryMonth:
    start: datetime = strawberry.field(description="Month start (clipped to the range).")
    end: datetime = strawberry.field(description="Month end (exclusive, clipped to the range).")
    lines: list[MonthlySummaryLine] = strawberry.field(description="One line per currency with revenue or costs.")


@strawberry.type(description="Gross, fees, costs and net profit per UTC month and currency; nothing is converted.")
class MonthlySummary:
    range: ResolvedRange = strawberry.field(description="The range covered (UTC).")
    months: list[MonthlySummaryMonth] = strawberry.field(description="Every month of the range, in order.")
    totals: list[MonthlySummaryLine] = strawberry.field(description="The sum of the months, per currency.")


@strawberry.enum(description="How a payout compares with the ledger entries it pays.")
class PayoutStatus(Enum):
    MATCHED = strawberry.enum_value("matched", description="Paid exactly the expected amount.")
    AMOUNT_MISMATCH = strawberry.enum_value("amount_mismatch", description="Paid, but not the expected amount.")
    UNMATCHED_PAYOUT = strawberry.enum_value("unmatched_payout", description="Paid, but no ledger entry carries its payoutId.")
    UNPAID = strawberry.enum_value("unpaid", description="Ledger entries carry a payoutId no payout has settled.")


@strawberry.type(
    description="A payout (organization, payoutId, currency) against the revenue entries carrying its properties.payoutId; "
    "expected = their amounts net of platform, service and processor fees."
)
class PayoutReconciliationRow:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    organization_name: str = strawberry.field(description="Its name.")
    payout_id: str | None = strawberry.field(description="properties.payoutId (null for a payout sent without one).")
    profile_id: strawberry.ID | None = strawberry.field(description="The payout's (else the entries') profile, if any.")
    currency: str = strawberry.field(description="ISO 4217 code.")
    paid_minor: int | None = strawberry.field(description="What the payouts with this id settled; null when unpaid.")
    expected_minor: int | None = strawberry.field(description="What the ledger entries expect; null when none carry the id.")
    difference_minor: int = strawberry.field(description="paid - expected (a missing side counts as 0).")
    entries: int = strawberry.field(description="Ledger entries carrying the payoutId.")
    settled_at: datetime | None = strawberry.field(description="When the (latest) payout settled.")
    last_entry_at: datetime | None = strawberry.field(description="The latest ledger entry carrying the payoutId.")
    status: PayoutStatus = strawberry.field(description="Matched, amount mismatch, unmatched payout or unpaid.")
    discrepancy: bool = strawberry.field(description="True unless matched: highlight these.")


@strawberry.type(description="Payout reconciliation: discrepancies first (largest difference first), then by date.")
class PayoutReconciliation:
    range: ResolvedRange = strawberry.field(
        description="Rows dated in this range: the settlement, or the latest entry when unpaid (UTC)."
    )
    rows: list[PayoutReconciliationRow] = strawberry.field(description="The rows with the statuses asked for.")
    discrepancies: int = strawberry.field(description="Rows that are not matched.")


@strawberry.type(description="An issued invoice not paid yet.")
class OutstandingInvoice:
    organization_id: strawberry.ID = strawberry.field(description="The organization invoiced.")
    organization_name: str = strawberry.field(description="Its name.")
    invoice_id: str = strawberry.field(description="properties.invoiceId of invoice.issued.")
    amount: Money = strawberry.field(description="The amount invoiced.")
    due_date: Date = strawberry.field(description="properties.dueDate.")
    issued_at: datetime = strawberry.field(description="When it was issued.")
    overdue: bool = strawberry.field(description="Due before today (UTC).")
    days_overdue: int = strawberry.field(description="Days past the due date (0 when not overdue).")


@strawberry.type(description="What one organization owes on one due date in one currency.")
class InvoiceGroup:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    organization_name: str = strawberry.field(description="Its name.")
    due_date: Date = strawberry.field(description="The due date.")
    overdue: bool = strawberry.field(description="Due before today (UTC).")
    currency: str = strawberry.field(description="ISO 4217 code.")
    amount_minor: int = strawberry.field(description="Outstanding in minor units of `currency`.")
    invoices: int = strawberry.field(description="How many invoices.")


@strawberry.type(
    description="Issued, unpaid invoices grouped by organization (by name) and due date (earliest first); "
    "both lists are in that order, flat so that a client may group or page them."
)
class OutstandingInvoices:
    today: Date = strawberry.field(description="Today (UTC): invoices due before it are overdue.")
    groups: list[InvoiceGroup] = strawberry.field(description="Totals per organization, due date and currency.")
    invoices: list[OutstandingInvoice] = strawberry.field(description="Every outstanding invoice.")


@strawberry.type(description="A report as a file: the query's rows, in its order, amounts in integer minor units.")
class ReportFile:
    filename: str = strawberry.field(description="Suggested file name.")
    content_type: str = strawberry.field(description="MIME type.")
    encoding: str = strawberry.field(description="utf-8 (content is the text) or base64 (content is the bytes, base64).")
    content: str = strawberry.field(description="The file.")


@strawberry.enum(description="Where an invoice stands.")
class InvoiceStatus(Enum):
    OUTSTANDING = strawberry.enum_value("outstanding", description="Issued, not paid.")
    PAID = strawberry.enum_value("paid", description="Paid (an invoice.paid event, or marked paid by a platform admin).")


@strawberry.type(description="An issued invoice of an organization.")
class Invoice:
    organization_id: strawberry.ID = strawberry.field(description="The organization invoiced.")
    invoice_id: str = strawberry.field(description="properties.invoiceId of invoice.issued.")
    amount: Money = strawberry.field(description="The amount invoiced.")
    due_date: Date = strawberry.field(description="properties.dueDate.")
    issued_at: datetime = strawberry.field(description="When it was issued.")
    status: InvoiceStatus = strawberry.field(description="Outstanding or paid.")
    paid_at: datetime | None = strawberry.field(description="When it was paid (UTC); null while outstanding.")
    paid_manually: bool = strawberry.field(description="Marked paid by a platform admin rather than by an invoice.paid event.")
    days_overdue: int = strawberry.field(description="Days past the due date, UTC (0 when not yet due, or paid).")


@strawberry.type(description="A reminder of an unpaid invoice, queued to the organization's channels.")
class InvoiceReminder:
    invoice: Invoice = strawberry.field(description="The invoice reminded.")
    days_overdue: int = strawberry.field(description="Days past its due date when reminded (0: not yet due).")
    deliveries: int = strawberry.field(
        description="Deliveries queued: one per enabled channel of the organization subscribed to invoice.reminder."
    )
