"""Financial reports for platform admins: revenue by organization, the monthly summary,
payout reconciliation and outstanding invoices, with CSV and XLSX exports; and the invoices
the worker records from invoice.issued / invoice.paid.

Every window is in UTC (platform reports have no single organization time zone); amounts
are integer minor units per currency, never converted. Definitions (also in the schema
descriptions and the README):
- GMV and fees as in app/services/platform.py; net = platform + service - processor fees.
- Monthly summary, per UTC month and currency: gross = the ledger's revenue (completed and
  refunded sales minus refunds, every type, each in its own period: the P&L's revenue);
  fees = platform + service + processor fees; costs = cost entries whose date's UTC
  midnight lies in the month; net profit = gross - fees - costs (the P&L's rules summed
  over organizations).
- Payout reconciliation: a payout (payout.settled, grouped by organization, payoutId and
  currency) is expected to pay the ledger's revenue entries carrying the same
  properties.payoutId, net of their fees: sum(amount - platform - service - processor
  fee). matched: paid = expected; amount_mismatch: both exist and differ; unmatched_payout:
  no entry carries its payoutId; unpaid: entries carry a payoutId no payout has settled.
  difference = paid - expected. A row's date is the payout's settlement (the latest entry's
  time when unpaid).
- Invoices: invoice.issued (properties.invoiceId, properties.dueDate, amount) and
  invoice.paid (properties.invoiceId) of an organization; outstanding = issued and not
  paid; overdue = due date before today (UTC). A platform admin may mark an issued invoice
  paid (bank transfer: recorded as an invoice.paid would, audited with the reason) and send
  the organization a reminder of an unpaid one (notification kind invoice.reminder, audited).
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg
import orjson
from openpyxl import Workbook

from app.auth import Viewer, platform_admin_scope
from app.consumers import Batch, Consumer
from app.database import connection
from app.errors import BadInput, NotFound, trimmed_text
from app.services.accounts import audit
from app.services.accounts.audit import Actor
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.services.notifications import enqueue_notification
from app.services.notifications.kinds import INVOICE_REMINDER
from app.services.platform import UTC_ZONE, PlatformReport
from app.services.pnl import CSV_TYPE, XLSX_TYPE, ExportFile
from app.services.revenue.contract import TEXT_PROPERTY_MAX_CHARS
from app.services.revenue.money import CURRENCY_RE, add_to, clipped_buckets, minor_digits
from app.timebuckets import (
    BucketIndex,
    Grain,
    RangeSpec,
    TimeRange,
    local_midnight,
    resolve_range,
    utcnow,
)
from app.vocabulary import INVOICE_EVENT_TYPES, INVOICE_ISSUED, INVOICE_PAID

# --------------------------------------------------------------------------- invoices: ingestion and worker


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """The invoice properties the worker reads, checked at ingestion: (field, reason) or None."""
    if event_type not in INVOICE_EVENT_TYPES:
        return None
    props = properties if isinstance(properties, Mapping) else {}
    invoice = props.get("invoiceId")
    if not isinstance(invoice, str) or not invoice.strip() or len(invoice) > TEXT_PROPERTY_MAX_CHARS:
        return "properties.invoiceId", f"properties.invoiceId must be text of 1 to {TEXT_PROPERTY_MAX_CHARS} characters"
    if event_type == INVOICE_ISSUED and _due_date(props.get("dueDate")) is None:
        return "properties.dueDate", "properties.dueDate must be a date, YYYY-MM-DD"
    return None


def _due_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


_INVOICE_EVENTS = f"""
SELECT e.organization_id, e.event_id, e.type, e.amount_minor, rtrim(e.currency) AS currency, e.properties, e.occurred_at
FROM {CLAIMED_EVENTS}
ORDER BY e.occurred_at, e.event_id
"""
_ISSUE = """
INSERT INTO invoices (organization_id, invoice_id, amount_minor, currency, due_date, issued_at, issued_event_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::date[], $6::timestamptz[], $7::text[])
ON CONFLICT (organization_id, invoice_id) DO UPDATE
SET amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency, due_date = EXCLUDED.due_date,
    issued_at = EXCLUDED.issued_at, issued_event_id = EXCLUDED.issued_event_id
WHERE invoices.issued_event_id IS NULL
"""
_PAY = """
INSERT INTO invoices (organization_id, invoice_id, paid_at, paid_event_id, paid_amount_minor, paid_currency)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::bigint[], $6::text[])
ON CONFLICT (organization_id, invoice_id) DO UPDATE
SET paid_at = EXCLUDED.paid_at, paid_event_id = EXCLUDED.paid_event_id, paid_amount_minor = EXCLUDED.paid_amount_minor,
    paid_currency = EXCLUDED.paid_currency
WHERE invoices.paid_event_id IS NULL
"""


async def record_invoices(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record a claimed batch's invoice events in the caller's transaction (first issue and
    first payment of an invoice win, so a re-run batch changes nothing)."""
    claimed = [r for r in rows if r["type"] in INVOICE_EVENT_TYPES]
    if not claimed:
        return
    events = [dict(e, properties=orjson.loads(e["properties"])) for e in await conn.fetch(_INVOICE_EVENTS, *keys_of(claimed))]
    issued = _first_per_invoice([e for e in events if e["type"] == INVOICE_ISSUED])
    paid = _first_per_invoice([e for e in events if e["type"] == INVOICE_PAID])
    if issued:
        await conn.execute(_ISSUE, *_columns(issued, lambda e: (
            e["organization_id"], e["properties"]["invoiceId"], e["amount_minor"], e["currency"],
            _due_date(e["properties"]["dueDate"]), e["occurred_at"], e["event_id"])))  # fmt: skip
    if paid:
        await conn.execute(_PAY, *_columns(paid, lambda e: (
            e["organization_id"], e["properties"]["invoiceId"], e["occurred_at"], e["event_id"], e["amount_minor"],
            e["currency"])))  # fmt: skip


def _first_per_invoice(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per invoice in a batch (the earliest), as one upsert may not touch a row twice."""
    first: dict[tuple[Any, str], dict[str, Any]] = {}
    for event in events:
        first.setdefault((event["organization_id"], event["properties"]["invoiceId"]), event)
    return list(first.values())


def _columns(events: list[dict[str, Any]], row: Callable[[dict[str, Any]], tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*(row(e) for e in events), strict=True)]


# --------------------------------------------------------------------------- shared


def utc_range(time_range: RangeSpec) -> TimeRange:
    return resolve_range(time_range, UTC_ZONE)


def _currency_filter(value: str | None) -> str | None:
    if value is not None and not CURRENCY_RE.fullmatch(value):
        raise BadInput("currency must be an ISO 4217 code such as EUR", field="currency")
    return value


async def _names(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.fetch("SELECT id, name FROM organizations WHERE id = ANY($1::uuid[])", list(ids))
    return {r["id"]: r["name"] for r in rows}


# --------------------------------------------------------------------------- revenue by organization

_BY_ORGANIZATION = """
SELECT t.organization_id, t.currency,
       COALESCE(sum(t.amount_minor) FILTER (WHERE t.type = ANY($4::text[])), 0)::bigint AS gmv,
       sum(t.platform_fee_minor)::bigint AS platform_fees, sum(t.service_fee_minor)::bigint AS service_fees,
       sum(t.processor_fee_minor)::bigint AS processor_fees, count(*) AS entries,
       max(t.occurred_at) FILTER (WHERE NOT t.is_refund) AS last_payment_at
FROM transactions t
WHERE t.occurred_at >= $2 AND t.occurred_at < $3 AND t.status IN ('completed', 'refunded')
  AND ($1::uuid IS NULL OR t.organization_id = $1) AND ($5::text IS NULL OR t.currency = $5)
GROUP BY t.organization_id, t.currency
"""


class SortField(str, Enum):
    ORGANIZATION_NAME = "organization_name"
    CURRENCY = "currency"
    GMV = "gmv"
    SERVICE_FEES = "service_fees"
    PLATFORM_FEES = "platform_fees"
    PROCESSOR_FEES = "processor_fees"
    NET = "net"
    LAST_PAYMENT_AT = "last_payment_at"


@dataclass(frozen=True, slots=True)
class OrganizationRevenue:
    organization_id: uuid.UUID
    organization_name: str
    currency: str
    gmv: int
    service_fees: int
    platform_fees: int
    processor_fees: int
    entries: int
    last_payment_at: datetime | None

    @property
    def net(self) -> int:
        return self.platform_fees + self.service_fees - self.processor_fees


@dataclass(frozen=True, slots=True)
class RevenueByOrganization:
    range: TimeRange
    rows: list[OrganizationRevenue]


def _sort(rows: list[OrganizationRevenue], by: SortField, descending: bool) -> list[OrganizationRevenue]:
    """Stable: ties keep name, organization id and currency order; rows without a payment date sort last."""
    rows = sorted(rows, key=lambda r: (r.organization_name, str(r.organization_id), r.currency))
    if by is SortField.ORGANIZATION_NAME:
        return sorted(rows, key=lambda r: r.organization_name, reverse=descending)
    if by is SortField.LAST_PAYMENT_AT:
        dated = sorted((r for r in rows if r.last_payment_at), key=lambda r: r.last_payment_at, reverse=descending)
        return dated + [r for r in rows if r.last_payment_at is None]
    return sorted(rows, key=lambda r: getattr(r, by.value), reverse=descending)


class RevenueByOrganizationQuery(PlatformReport[None, RevenueByOrganization]):
    """GMV, fees, net and last payment per organization and currency over a UTC range, sorted."""

    kind = "revenue_by_organization"

    async def fetch(self, org: uuid.UUID | None, plan: None) -> RevenueByOrganization:
        time_range = self.inputs["time_range"]
        currency = self.inputs["currency"]
        sort = self.inputs["sort"]
        descending = self.inputs["descending"]
        span, wanted = utc_range(time_range), _currency_filter(currency)
        async with connection() as conn:
            found = await conn.fetch(_BY_ORGANIZATION, org, span.start, span.end, ["booking", "gift", "subscription", "order"], wanted)
            names = await _names(conn, {r["organization_id"] for r in found})
        rows = [
            OrganizationRevenue(
                organization_id=r["organization_id"], organization_name=names.get(r["organization_id"], ""),
                currency=r["currency"], gmv=r["gmv"], service_fees=r["service_fees"], platform_fees=r["platform_fees"],
                processor_fees=r["processor_fees"], entries=r["entries"], last_payment_at=r["last_payment_at"],
            )  # fmt: skip
            for r in found
        ]
        return RevenueByOrganization(span, _sort(rows, sort, descending))


async def revenue_by_organization(
    *,
    viewer: Viewer,
    time_range: RangeSpec,
    organization_id: Any = None,
    currency: str | None = None,
    sort: SortField = SortField.GMV,
    descending: bool = True,
) -> RevenueByOrganization:
    return await RevenueByOrganizationQuery(
        viewer=viewer, time_range=time_range, organization_id=organization_id, currency=currency, sort=sort, descending=descending
    ).run()


REVENUE_HEADER = [
    "organization_id", "organization_name", "currency", "gmv", "service_fees", "platform_fees", "processor_fees", "net",
    "entries", "last_payment_at",
]  # fmt: skip


def revenue_table(report: RevenueByOrganization) -> list[list[Any]]:
    """One row per organization and currency, in the report's order; amounts in minor units."""
    return [
        [str(r.organization_id), r.organization_name, r.currency, r.gmv, r.service_fees, r.platform_fees,
         r.processor_fees, r.net, r.entries, r.last_payment_at.isoformat() if r.last_payment_at else ""]
        for r in report.rows
    ]  # fmt: skip


# --------------------------------------------------------------------------- monthly summary

_MONTH_COSTS = """
SELECT incurred_on, currency, sum(amount_minor)::bigint AS amount
FROM costs
WHERE ($1::uuid IS NULL OR organization_id = $1) AND incurred_on >= $2 AND incurred_on <= $3
GROUP BY incurred_on, currency
"""
_MONTH_REVENUE = """
SELECT b.i - 1 AS i, t.currency, sum(t.amount_minor)::bigint AS gross,
       sum(t.platform_fee_minor + t.service_fee_minor + t.processor_fee_minor)::bigint AS fees
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, i)
JOIN transactions t ON t.occurred_at >= b.s AND t.occurred_at < b.e AND ($1::uuid IS NULL OR t.organization_id = $1)
WHERE t.status IN ('completed', 'refunded')
GROUP BY b.i, t.currency
"""


@dataclass(slots=True)
class SummaryLine:
    currency: str
    gross: int = 0
    fees: int = 0
    costs: int = 0

    @property
    def net_profit(self) -> int:
        return self.gross - self.fees - self.costs


@dataclass(slots=True)
class SummaryMonth:
    start: datetime
    end: datetime
    lines: dict[str, SummaryLine] = field(default_factory=dict)

    def line(self, currency: str) -> SummaryLine:
        return self.lines.setdefault(currency, SummaryLine(currency))


@dataclass(frozen=True, slots=True)
class MonthlySummary:
    organization_id: uuid.UUID | None
    range: TimeRange
    months: list[SummaryMonth]

    @property
    def totals(self) -> list[SummaryLine]:
        totals: dict[str, SummaryLine] = {}
        for month in self.months:
            for line in month.lines.values():
                total = totals.setdefault(line.currency, SummaryLine(line.currency))
                total.gross, total.fees, total.costs = total.gross + line.gross, total.fees + line.fees, total.costs + line.costs
        return [totals[c] for c in sorted(totals)]


class MonthlySummaryQuery(PlatformReport[None, MonthlySummary]):
    """Gross, fees, costs and net profit per UTC month (or `grain`, clipped to the range) and currency."""

    kind = "monthly_summary"

    async def fetch(self, org: uuid.UUID | None, plan: None) -> MonthlySummary:
        time_range = self.inputs["time_range"]
        grain = self.inputs["grain"]
        span = utc_range(time_range)
        starts, ends = clipped_buckets(span, grain)
        months = [SummaryMonth(s, e) for s, e in zip(starts, ends, strict=True)]
        async with connection() as conn:
            for row in await conn.fetch(_MONTH_REVENUE, org, starts, ends):
                line = months[row["i"]].line(row["currency"])
                line.gross, line.fees = row["gross"], row["fees"]
            costs = await conn.fetch(_MONTH_COSTS, org, span.start.date() - timedelta(days=1), span.end.date())
        index = BucketIndex(starts)
        for cost in costs:
            midnight = local_midnight(cost["incurred_on"], UTC_ZONE)
            position = index.find(midnight)
            if position is not None and span.start <= midnight < span.end:
                months[position].line(cost["currency"]).costs += cost["amount"]
        for month in months:
            month.lines = dict(sorted(month.lines.items()))
        return MonthlySummary(org, span, months)


async def monthly_summary(
    *, viewer: Viewer, time_range: RangeSpec, organization_id: Any = None, grain: Grain = Grain.MONTH
) -> MonthlySummary:
    return await MonthlySummaryQuery(
        viewer=viewer, time_range=time_range, organization_id=organization_id, grain=grain
    ).run()


SUMMARY_HEADER = ["month_start", "month_end", "currency", "gross", "fees", "costs", "net_profit"]


def summary_table(report: MonthlySummary) -> list[list[Any]]:
    """One row per month and currency, then one "total" row per currency."""
    rows = [
        [m.start.isoformat(), m.end.isoformat(), x.currency, x.gross, x.fees, x.costs, x.net_profit]
        for m in report.months
        for x in m.lines.values()
    ]
    return rows + [["total", "total", x.currency, x.gross, x.fees, x.costs, x.net_profit] for x in report.totals]


# --------------------------------------------------------------------------- payout reconciliation

_RECONCILE = """
WITH paid AS (
    SELECT organization_id, COALESCE(payout_id, 'event:' || event_id) AS payout_key, payout_id, currency,
           sum(amount_minor)::bigint AS paid, max(occurred_at) AS settled_at, min(profile_id::text) AS profile_id
    FROM payouts
    WHERE ($1::uuid IS NULL OR organization_id = $1)
    GROUP BY 1, 2, 3, 4
), expected AS (
    SELECT organization_id, metadata ->> 'payoutId' AS payout_key, currency,
           sum(amount_minor - platform_fee_minor - service_fee_minor - processor_fee_minor)::bigint AS expected,
           count(*) AS entries, max(occurred_at) AS last_entry_at, min(profile_id::text) AS profile_id
    FROM transactions
    WHERE metadata ? 'payoutId' AND status IN ('completed', 'refunded') AND ($1::uuid IS NULL OR organization_id = $1)
    GROUP BY 1, 2, 3
)
SELECT COALESCE(p.organization_id, x.organization_id) AS organization_id,
       COALESCE(p.payout_id, CASE WHEN p.payout_key IS NULL THEN x.payout_key END) AS payout_id,
       COALESCE(p.currency, x.currency) AS currency, COALESCE(p.profile_id, x.profile_id) AS profile_id,
       p.paid, x.expected, COALESCE(x.entries, 0) AS entries, p.settled_at, x.last_entry_at
FROM paid p
FULL JOIN expected x ON x.organization_id = p.organization_id AND x.payout_key = p.payout_key AND x.currency = p.currency
"""


class PayoutStatus(str, Enum):
    MATCHED = "matched"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNMATCHED_PAYOUT = "unmatched_payout"
    UNPAID = "unpaid"


@dataclass(frozen=True, slots=True)
class PayoutRow:
    organization_id: uuid.UUID
    organization_name: str
    payout_id: str | None
    profile_id: str | None
    currency: str
    paid: int | None
    expected: int | None
    entries: int
    settled_at: datetime | None
    last_entry_at: datetime | None

    @property
    def status(self) -> PayoutStatus:
        if self.paid is None:
            return PayoutStatus.UNPAID
        if self.expected is None:
            return PayoutStatus.UNMATCHED_PAYOUT
        return PayoutStatus.MATCHED if self.paid == self.expected else PayoutStatus.AMOUNT_MISMATCH

    @property
    def difference(self) -> int:
        return (self.paid or 0) - (self.expected or 0)

    @property
    def at(self) -> datetime:
        return self.settled_at or self.last_entry_at  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class PayoutReconciliation:
    range: TimeRange
    rows: list[PayoutRow]


class PayoutReconciliationQuery(PlatformReport[None, PayoutReconciliation]):
    """Payouts against the ledger entries they pay, dated in the range, filtered by status;
    discrepancies first (largest difference first), then by date."""

    kind = "payout_reconciliation"

    async def fetch(self, org: uuid.UUID | None, plan: None) -> PayoutReconciliation:
        time_range = self.inputs["time_range"]
        statuses = self.inputs["statuses"]
        span = utc_range(time_range)
        async with connection() as conn:
            found = await conn.fetch(_RECONCILE, org)
            names = await _names(conn, {r["organization_id"] for r in found})
        rows = [
            PayoutRow(
                organization_id=r["organization_id"], organization_name=names.get(r["organization_id"], ""),
                payout_id=r["payout_id"], profile_id=r["profile_id"], currency=r["currency"], paid=r["paid"],
                expected=r["expected"], entries=r["entries"], settled_at=r["settled_at"], last_entry_at=r["last_entry_at"],
            )  # fmt: skip
            for r in found
        ]
        wanted = set(statuses) if statuses else set(PayoutStatus)
        kept = [r for r in rows if span.start <= r.at < span.end and r.status in wanted]
        kept.sort(key=lambda r: (r.status is PayoutStatus.MATCHED, -abs(r.difference), r.at, r.payout_id or ""))
        return PayoutReconciliation(span, kept)


async def payout_reconciliation(
    *, viewer: Viewer, time_range: RangeSpec, organization_id: Any = None, statuses: Sequence[PayoutStatus] | None = None
) -> PayoutReconciliation:
    return await PayoutReconciliationQuery(
        viewer=viewer, time_range=time_range, organization_id=organization_id, statuses=statuses
    ).run()


# --------------------------------------------------------------------------- outstanding invoices

_OUTSTANDING = """
SELECT i.organization_id, o.name, i.invoice_id, i.amount_minor, i.currency, i.due_date, i.issued_at
FROM invoices i JOIN organizations o ON o.id = i.organization_id
WHERE i.paid_event_id IS NULL AND i.issued_event_id IS NOT NULL AND ($1::uuid IS NULL OR i.organization_id = $1)
ORDER BY o.name, i.organization_id, i.due_date, i.invoice_id
"""


@dataclass(frozen=True, slots=True)
class OutstandingInvoice:
    invoice_id: str
    amount_minor: int
    currency: str
    due_date: date
    issued_at: datetime


@dataclass(slots=True)
class DueGroup:
    due_date: date
    invoices: list[OutstandingInvoice] = field(default_factory=list)

    @property
    def total(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for invoice in self.invoices:
            add_to(out, invoice.currency, invoice.amount_minor)
        return out


@dataclass(slots=True)
class OrganizationInvoices:
    organization_id: uuid.UUID
    organization_name: str
    due_dates: list[DueGroup] = field(default_factory=list)

    def total(self, today: date | None = None) -> dict[str, int]:
        """Outstanding per currency; with `today`, only what is overdue."""
        out: dict[str, int] = {}
        for group in self.due_dates:
            if today is None or group.due_date < today:
                for currency, amount in group.total.items():
                    add_to(out, currency, amount)
        return out


@dataclass(frozen=True, slots=True)
class OutstandingInvoices:
    today: date
    organizations: list[OrganizationInvoices]


class OutstandingInvoicesQuery(PlatformReport[None, OutstandingInvoices]):
    """Issued, unpaid invoices grouped by organization and due date (overdue: due before today, UTC)."""

    kind = "outstanding_invoices"

    async def fetch(self, org: uuid.UUID | None, plan: None) -> OutstandingInvoices:
        async with connection() as conn:
            found = await conn.fetch(_OUTSTANDING, org)
        groups: dict[uuid.UUID, OrganizationInvoices] = {}
        for r in found:
            owner = groups.setdefault(r["organization_id"], OrganizationInvoices(r["organization_id"], r["name"]))
            if not owner.due_dates or owner.due_dates[-1].due_date != r["due_date"]:
                owner.due_dates.append(DueGroup(r["due_date"]))
            owner.due_dates[-1].invoices.append(
                OutstandingInvoice(r["invoice_id"], r["amount_minor"], r["currency"], r["due_date"], r["issued_at"])
            )
        return OutstandingInvoices(utcnow().date(), list(groups.values()))


async def outstanding_invoices(*, viewer: Viewer, organization_id: Any = None) -> OutstandingInvoices:
    return await OutstandingInvoicesQuery(viewer=viewer, organization_id=organization_id).run()


# --------------------------------------------------------------------------- exports


def to_file(name: str, header: list[str], rows: list[list[Any]], fmt: str) -> ExportFile:
    """The P&L export's writers: RFC 4180 CSV (UTF-8 text) or one XLSX sheet (base64) with a
    notes sheet; amounts are integer minor units of the row's currency."""
    if fmt == "xlsx":
        book = Workbook()
        sheet = book.active
        sheet.title = name[:31]
        sheet.append(header)
        for row in rows:
            sheet.append(row)
        notes = book.create_sheet("Notes")
        notes.append(["Amounts are integer minor units of the row's currency (minor digits per currency below)."])
        for currency in sorted({row[header.index("currency")] for row in rows}):
            notes.append([currency, minor_digits(currency)])
        buffer = io.BytesIO()
        book.save(buffer)
        return ExportFile(f"{name}.xlsx", XLSX_TYPE, "base64", base64.b64encode(buffer.getvalue()).decode())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ExportFile(f"{name}.csv", CSV_TYPE, "utf-8", out.getvalue())


async def revenue_by_organization_export(*, fmt: str, **query: Any) -> ExportFile:
    """The revenue-by-organization query's rows as a file, in its order."""
    report = await revenue_by_organization(**query)
    return to_file(f"revenue-by-organization-{report.range.start.date()}", REVENUE_HEADER, revenue_table(report), fmt)


async def monthly_summary_export(*, fmt: str, **query: Any) -> ExportFile:
    """The monthly summary's numbers as a file, so a spreadsheet reconciles with the API to the cent."""
    report = await monthly_summary(**query)
    return to_file(f"monthly-summary-{report.range.start.date()}", SUMMARY_HEADER, summary_table(report), fmt)


class InvoiceConsumer(Consumer):
    """invoice.issued and invoice.paid into the invoices table."""

    name = "invoices"
    event_types = INVOICE_EVENT_TYPES

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> None:
        await record_invoices(conn, rows)


# --------------------------------------------------------------------------- invoice actions
#
# Platform admins settle what the host platform's events did not say: an invoice paid by bank
# transfer is marked paid (as an invoice.paid would record it, with the admin's reason), and an
# unpaid one is reminded to the organization through its channels subscribed to
# invoice.reminder (email, webhook). Each writes its audit entry in its own transaction.

MAX_REASON = 500
MANUAL_PAYMENT_PREFIX = "admin:"  # paid_event_id of an invoice an admin marked paid


@dataclass(frozen=True, slots=True)
class Invoice:
    organization_id: uuid.UUID
    invoice_id: str
    amount_minor: int
    currency: str
    due_date: date
    issued_at: datetime
    paid_at: datetime | None
    paid_manually: bool

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    def days_overdue(self, today: date) -> int:
        """Days past its due date (0 when not yet due or paid)."""
        return 0 if self.paid else max(0, (today - self.due_date).days)

    def state(self) -> dict[str, Any]:
        """What the audit log keeps of it."""
        return {"paid": self.paid, "paid_at": self.paid_at.isoformat() if self.paid_at else None,
                "amount_minor": self.amount_minor, "currency": self.currency, "due_date": self.due_date.isoformat()}  # fmt: skip


@dataclass(frozen=True, slots=True)
class InvoiceReminder:
    invoice: Invoice
    days_overdue: int
    deliveries: int


_INVOICE = """
SELECT organization_id, invoice_id, amount_minor, currency, due_date, issued_at, paid_at,
       COALESCE(paid_event_id LIKE 'admin:%', false) AS paid_manually
FROM invoices WHERE organization_id = $1 AND invoice_id = $2 AND issued_event_id IS NOT NULL
FOR UPDATE
"""
_MARK_PAID = """
UPDATE invoices SET paid_at = $3, paid_event_id = $4, paid_amount_minor = amount_minor, paid_currency = currency
WHERE organization_id = $1 AND invoice_id = $2 AND paid_event_id IS NULL
"""


async def _invoice_scope(viewer: Viewer, organization_id: Any, invoice_id: str) -> tuple[uuid.UUID, str]:
    org = await platform_admin_scope(viewer, organization_id, refusal="invoice actions need a platform admin token")
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    return org, trimmed_text(invoice_id, field="invoiceId", limit=TEXT_PROPERTY_MAX_CHARS)


async def _locked_invoice(conn: asyncpg.Connection, org: uuid.UUID, invoice_id: str) -> Invoice:
    """An issued invoice, locked until the caller's transaction ends; NOT_FOUND otherwise."""
    row = await conn.fetchrow(_INVOICE, org, invoice_id)
    if row is None:
        raise NotFound("invoice not found (an issued invoice of this organization)", field="invoiceId")
    return Invoice(*row)


def _paid_at(value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadInput("paidAt needs a UTC offset, e.g. 2026-05-01T12:00:00Z", field="paidAt")
    if value > now:
        raise BadInput("paidAt is in the future", field="paidAt")
    return value.astimezone(UTC)


async def mark_invoice_paid(
    *, viewer: Viewer, organization_id: Any, invoice_id: str, reason: str, paid_at: datetime | None = None,
    address: str | None,
) -> Invoice:  # fmt: skip
    """Record the payment of an issued invoice at `paid_at` (default now), in full, as an
    invoice.paid would: it leaves the outstanding invoices, and a later invoice.paid changes
    nothing (the first payment wins)."""
    org, text = await _invoice_scope(viewer, organization_id, invoice_id)
    why = trimmed_text(reason, field="reason", limit=MAX_REASON)
    when = _paid_at(paid_at, utcnow())
    async with connection() as conn, conn.transaction():
        before = await _locked_invoice(conn, org, text)
        if before.paid:
            raise BadInput(f"invoice {text} is already paid (at {before.paid_at:%Y-%m-%d %H:%M} UTC)", field="invoiceId")
        await conn.execute(_MARK_PAID, org, text, when, f"{MANUAL_PAYMENT_PREFIX}{uuid.uuid4()}")
        after = await _locked_invoice(conn, org, text)
        await audit.record(
            conn, action=audit.INVOICE_MARKED_PAID, actor=Actor.of(viewer, address), organization_id=org, target=text,
            before=before.state(), after=after.state(), reason=why,
        )  # fmt: skip
    return after


async def send_invoice_reminder(*, viewer: Viewer, organization_id: Any, invoice_id: str, address: str | None) -> InvoiceReminder:
    """Remind the organization of an unpaid invoice through its channels subscribed to
    invoice.reminder; returns how many deliveries were queued (0: no channel takes it)."""
    org, text = await _invoice_scope(viewer, organization_id, invoice_id)
    today = utcnow().date()
    async with connection() as conn, conn.transaction():
        invoice = await _locked_invoice(conn, org, text)
        if invoice.paid:
            raise BadInput(f"invoice {text} is already paid: there is nothing to remind", field="invoiceId")
        overdue = invoice.days_overdue(today)
        payload = {"invoiceId": invoice.invoice_id, "amountMinor": invoice.amount_minor, "currency": invoice.currency,
                   "dueDate": invoice.due_date.isoformat(), "daysOverdue": overdue}  # fmt: skip
        queued = await enqueue_notification(conn, organization_id=org, kind=INVOICE_REMINDER, payload=payload)
        await audit.record(
            conn, action=audit.INVOICE_REMINDER_SENT, actor=Actor.of(viewer, address), organization_id=org, target=text,
            after={**payload, "deliveries": queued},
        )  # fmt: skip
    return InvoiceReminder(invoice, overdue, queued)
