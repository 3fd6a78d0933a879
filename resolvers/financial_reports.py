"""Financial reports and their files (thin: convert, call, map)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import financial_reports as service
from app.services.pnl import ExportFile
from app.timebuckets import Grain, utcnow
from resolvers.common import RangeArg, address_of, guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.platform import PlatformOrganizationArg, TargetOrganizationArg, as_id
from schema.common import Granularity, Money
from schema.financial_reports import (
    Invoice,
    InvoiceGroup,
    InvoiceReminder,
    InvoiceStatus,
    MonthlySummary,
    MonthlySummaryLine,
    MonthlySummaryMonth,
    OrganizationRevenue,
    OrganizationRevenueSort,
    OutstandingInvoice,
    OutstandingInvoices,
    PayoutReconciliation,
    PayoutReconciliationRow,
    PayoutStatus,
    ReportFile,
    RevenueByOrganization,
    SortDirection,
)
from schema.pnl import ExportFormat

UtcRangeArg = RangeArg  # the same input; platform reports resolve it in UTC
SortArg = Annotated[OrganizationRevenueSort | None, strawberry.argument(description="Sort order; default GMV descending.")]
CurrencyArg = Annotated[str | None, strawberry.argument(description="Only this ISO 4217 currency.")]
FormatArg = Annotated[ExportFormat, strawberry.argument(name="format", description="CSV (default) or XLSX.")]
PeriodArg = Annotated[Granularity, strawberry.argument(description="Period size: MONTH (default), or WEEK, DAY, HOUR (UTC).")]
StatusesArg = Annotated[
    list[PayoutStatus] | None, strawberry.argument(description="Only these statuses; omit for all.")
]


def _revenue_query(info: Info, range_: Any, organization_id: Any, currency: Any, sort: Any) -> dict[str, Any]:
    sort = sort or OrganizationRevenueSort()
    return {
        "viewer": viewer_of(info), "time_range": to_range_spec(range_), "organization_id": organization_id,
        "currency": currency, "sort": service.SortField(sort.field.value), "descending": sort.direction is SortDirection.DESC,
    }  # fmt: skip


def to_file(found: ExportFile) -> ReportFile:
    return ReportFile(filename=found.filename, content_type=found.content_type, encoding=found.encoding, content=found.content)


async def revenue_by_organization(
    info: Info, range_: UtcRangeArg, organization_id: PlatformOrganizationArg = None, currency: CurrencyArg = None,
    sort: SortArg = None,
) -> RevenueByOrganization:  # fmt: skip
    found = await service.revenue_by_organization(**_revenue_query(info, range_, organization_id, currency, sort))
    return RevenueByOrganization(
        range=to_resolved_range(found.range),
        rows=[
            OrganizationRevenue(
                organization_id=as_id(r.organization_id), organization_name=r.organization_name, currency=r.currency,
                gmv=r.gmv, service_fees=r.service_fees, platform_fees=r.platform_fees, processor_fees=r.processor_fees,
                net=r.net, entries=r.entries, last_payment_at=r.last_payment_at,
            )
            for r in found.rows
        ],
    )  # fmt: skip


async def revenue_by_organization_export(
    info: Info, range_: UtcRangeArg, organization_id: PlatformOrganizationArg = None, currency: CurrencyArg = None,
    sort: SortArg = None, format_: FormatArg = ExportFormat.CSV,
) -> ReportFile:  # fmt: skip
    query = _revenue_query(info, range_, organization_id, currency, sort)
    return to_file(await service.revenue_by_organization_export(fmt=format_.value, **query))


def to_line(line: service.SummaryLine) -> MonthlySummaryLine:
    return MonthlySummaryLine(
        currency=line.currency, gross=line.gross, fees=line.fees, costs=line.costs, net_profit=line.net_profit
    )


async def monthly_summary(
    info: Info, range_: UtcRangeArg, organization_id: PlatformOrganizationArg = None, granularity: PeriodArg = Granularity.MONTH
) -> MonthlySummary:
    found = await service.monthly_summary(
        viewer=viewer_of(info), time_range=to_range_spec(range_), organization_id=organization_id,
        grain=Grain(granularity.value),
    )
    return MonthlySummary(
        range=to_resolved_range(found.range),
        months=[MonthlySummaryMonth(start=m.start, end=m.end, lines=[to_line(x) for x in m.lines.values()]) for m in found.months],
        totals=[to_line(x) for x in found.totals],
    )  # fmt: skip


async def monthly_summary_export(
    info: Info, range_: UtcRangeArg, organization_id: PlatformOrganizationArg = None,
    granularity: PeriodArg = Granularity.MONTH, format_: FormatArg = ExportFormat.CSV,
) -> ReportFile:  # fmt: skip
    found = await service.monthly_summary_export(
        fmt=format_.value, viewer=viewer_of(info), time_range=to_range_spec(range_), organization_id=organization_id,
        grain=Grain(granularity.value),
    )
    return to_file(found)


async def payout_reconciliation(
    info: Info, range_: UtcRangeArg, organization_id: PlatformOrganizationArg = None, statuses: StatusesArg = None
) -> PayoutReconciliation:
    found = await service.payout_reconciliation(
        viewer=viewer_of(info), time_range=to_range_spec(range_), organization_id=organization_id,
        statuses=[service.PayoutStatus(s.value) for s in statuses] if statuses else None,
    )  # fmt: skip
    rows = [
        PayoutReconciliationRow(
            organization_id=as_id(r.organization_id), organization_name=r.organization_name, payout_id=r.payout_id,
            profile_id=as_id(r.profile_id) if r.profile_id else None, currency=r.currency, paid_minor=r.paid,
            expected_minor=r.expected, difference_minor=r.difference, entries=r.entries, settled_at=r.settled_at,
            last_entry_at=r.last_entry_at, status=PayoutStatus(r.status.value),
            discrepancy=r.status is not service.PayoutStatus.MATCHED,
        )  # fmt: skip
        for r in found.rows
    ]
    return PayoutReconciliation(
        range=to_resolved_range(found.range), rows=rows, discrepancies=sum(r.discrepancy for r in rows)
    )


async def outstanding_invoices(info: Info, organization_id: PlatformOrganizationArg = None) -> OutstandingInvoices:
    found = await service.outstanding_invoices(viewer=viewer_of(info), organization_id=organization_id)
    today = found.today
    groups, invoices = [], []
    for o in found.organizations:
        for g in o.due_dates:
            for currency, amount in sorted(g.total.items()):
                groups.append(InvoiceGroup(
                    organization_id=as_id(o.organization_id), organization_name=o.organization_name, due_date=g.due_date,
                    overdue=g.due_date < today, currency=currency, amount_minor=amount,
                    invoices=sum(1 for i in g.invoices if i.currency == currency),
                ))  # fmt: skip
            invoices += [
                OutstandingInvoice(
                    organization_id=as_id(o.organization_id), organization_name=o.organization_name, invoice_id=i.invoice_id,
                    amount=Money(amount_minor=i.amount_minor, currency=i.currency), due_date=i.due_date,
                    issued_at=i.issued_at, overdue=i.due_date < today, days_overdue=max((today - i.due_date).days, 0),
                )  # fmt: skip
                for i in g.invoices
            ]
    return OutstandingInvoices(today=today, groups=groups, invoices=invoices)


InvoiceIdArg = Annotated[str, strawberry.argument(description="The invoice (properties.invoiceId of invoice.issued).")]


def to_invoice(found: service.Invoice) -> Invoice:
    return Invoice(
        organization_id=as_id(found.organization_id), invoice_id=found.invoice_id,
        amount=Money(amount_minor=found.amount_minor, currency=found.currency), due_date=found.due_date,
        issued_at=found.issued_at, status=InvoiceStatus.PAID if found.paid else InvoiceStatus.OUTSTANDING,
        paid_at=found.paid_at, paid_manually=found.paid_manually, days_overdue=found.days_overdue(utcnow().date()),
    )  # fmt: skip


async def mark_invoice_paid(
    info: Info, organization_id: TargetOrganizationArg, invoice_id: InvoiceIdArg,
    reason: Annotated[str, strawberry.argument(description="Why (1..500 characters), e.g. the bank transfer's reference.")],
    paid_at: Annotated[datetime | None, strawberry.argument(description="When it was paid, with a UTC offset; default now.")] = None,
) -> Invoice:  # fmt: skip
    found = await service.mark_invoice_paid(
        viewer=viewer_of(info), organization_id=organization_id, invoice_id=invoice_id, reason=reason, paid_at=paid_at,
        address=address_of(info),
    )  # fmt: skip
    return to_invoice(found)


async def send_invoice_reminder(info: Info, organization_id: TargetOrganizationArg, invoice_id: InvoiceIdArg) -> InvoiceReminder:
    sent = await service.send_invoice_reminder(
        viewer=viewer_of(info), organization_id=organization_id, invoice_id=invoice_id, address=address_of(info)
    )
    return InvoiceReminder(invoice=to_invoice(sent.invoice), days_overdue=sent.days_overdue, deliveries=sent.deliveries)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The financial reports domain's reads, merged into the root by schema.root."""

    revenue_by_organization: RevenueByOrganization = guarded(
        Access.PLATFORM_ADMINS, revenue_by_organization,
        "GMV, service, platform and processor fees, net and last payment per organization and currency over "
        "a UTC range, sortable.",
    )
    revenue_by_organization_export: ReportFile = guarded(
        Access.PLATFORM_ADMINS, revenue_by_organization_export,
        "Revenue by organization as a CSV or XLSX file with exactly the query's rows.",
    )
    monthly_summary: MonthlySummary = guarded(
        Access.PLATFORM_ADMINS, monthly_summary,
        "Gross, fees, costs and net profit per UTC month and currency.",
    )
    monthly_summary_export: ReportFile = guarded(
        Access.PLATFORM_ADMINS, monthly_summary_export,
        "The monthly summary as a CSV or XLSX file with exactly the query's numbers.",
    )
    payout_reconciliation: PayoutReconciliation = guarded(
        Access.PLATFORM_ADMINS, payout_reconciliation,
        "Settled payouts matched to the ledger entries carrying their payoutId, with discrepancies "
        "(platform admins).",
    )
    outstanding_invoices: OutstandingInvoices = guarded(
        Access.PLATFORM_ADMINS, outstanding_invoices,
        "Issued, unpaid invoices grouped by organization and due date, with overdue flags.",
    )


@strawberry.type
class Mutation:
    """The financial reports domain's writes, merged into the root by schema.root."""

    mark_invoice_paid: Invoice = guarded(
        Access.PLATFORM_ADMINS, mark_invoice_paid,
        "Record the payment of an issued invoice in full (e.g. a bank transfer), as an invoice.paid would, with a reason"
        " (audited as invoice.marked_paid); an invoice already paid is refused.",
    )  # fmt: skip
    send_invoice_reminder: InvoiceReminder = guarded(
        Access.PLATFORM_ADMINS, send_invoice_reminder,
        "Remind the organization of an unpaid invoice through its channels subscribed to invoice.reminder (email, webhook),"
        " with its amount, due date and days overdue (audited as invoice.reminder_sent); a paid invoice is refused.",
    )  # fmt: skip
