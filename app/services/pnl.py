"""Profit and loss per period, from the ledger (app/services/revenue/ledger.py) and the cost entries
(app/services/costs.py), per currency, with CSV and XLSX exports of the same numbers.

Definitions (also in the schema descriptions):
- revenue: completed and refunded sales minus refunds, in the period they happened;
- fees: platform + service + processor fees recorded on those ledger entries;
- gross profit = revenue - fees; net profit = gross profit - costs;
- margin = net profit / revenue, rounded to 4 decimal places; null when revenue is 0.
Nothing is converted: each currency has its own line.
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from openpyxl import Workbook

from app.auth import Viewer
from app.services import costs as cost_service
from app.services.revenue.contract import TYPES
from app.services.revenue.money import MoneyReport, Scope, clipped_buckets, minor_digits
from app.services.revenue.reports import Bucket, revenue_buckets
from app.timebuckets import BucketIndex, Grain, RangeSpec, TimeRange, local_midnight

STREAMS = TYPES
CATEGORIES = cost_service.CATEGORIES


@dataclass(slots=True)
class Line:
    """One currency's P&L in one period."""

    currency: str
    revenue_by_stream: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    fees: int = 0
    costs_by_category: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))

    @property
    def revenue(self) -> int:
        return sum(self.revenue_by_stream.values())

    @property
    def gross_profit(self) -> int:
        return self.revenue - self.fees

    @property
    def costs(self) -> int:
        return sum(self.costs_by_category.values())

    @property
    def net_profit(self) -> int:
        return self.gross_profit - self.costs

    @property
    def margin(self) -> float | None:
        return round(self.net_profit / self.revenue, 4) if self.revenue else None

    def add(self, other: Line) -> None:
        for stream, amount in other.revenue_by_stream.items():
            self.revenue_by_stream[stream] += amount
        for category, amount in other.costs_by_category.items():
            self.costs_by_category[category] += amount
        self.fees += other.fees


@dataclass(slots=True)
class Period:
    start: datetime
    end: datetime
    lines: dict[str, Line] = field(default_factory=dict)

    def line(self, currency: str) -> Line:
        return self.lines.setdefault(currency, Line(currency))


@dataclass(frozen=True, slots=True)
class Pnl:
    scope: Scope
    range: TimeRange
    grain: Grain
    periods: list[Period]

    @property
    def totals(self) -> list[Line]:
        totals: dict[str, Line] = {}
        for period in self.periods:
            for currency, line in period.lines.items():
                totals.setdefault(currency, Line(currency)).add(line)
        return [totals[c] for c in sorted(totals)]


class PnlQuery(MoneyReport[Pnl]):
    """Revenue by stream, fees, costs by category, gross and net profit per local period and currency."""

    kind = "pnl"

    async def fetch(self, scope: Scope, span: TimeRange) -> Pnl:
        grain = self.inputs["grain"]
        starts, ends = clipped_buckets(span, grain)
        periods = [Period(s, e) for s, e in zip(starts, ends, strict=True)]
        for period, bucket in zip(periods, await revenue_buckets(scope, starts, ends), strict=True):
            _add_revenue(period, bucket)
        index = BucketIndex(starts)
        for cost in await cost_service.costs_in(scope, span):
            position = index.find(local_midnight(cost.incurred_on, scope.timezone))
            if position is not None:
                periods[position].line(cost.currency).costs_by_category[cost.category] += cost.amount_minor
        for period in periods:
            period.lines = dict(sorted(period.lines.items()))
        return Pnl(scope=scope, range=span, grain=grain, periods=periods)


async def pnl(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec, grain: Grain
) -> Pnl:
    return await PnlQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, grain=grain
    ).run()


def _add_revenue(period: Period, bucket: Bucket) -> None:
    for (stream, currency), amount in bucket.by_source.items():
        period.line(currency).revenue_by_stream[stream] += amount
    for currency, fees in bucket.fees.items():
        period.line(currency).fees += fees


# --------------------------------------------------------------------------- exports

CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = (
    ["period_start", "period_end", "currency"]
    + [f"revenue_{s}" for s in STREAMS]
    + ["revenue", "fees", "gross_profit"]
    + [f"costs_{c}" for c in CATEGORIES]
    + ["costs", "net_profit", "margin"]
)


@dataclass(frozen=True, slots=True)
class ExportFile:
    filename: str
    content_type: str
    encoding: str  # "utf-8" (text) or "base64" (binary)
    content: str


def table(report: Pnl) -> list[list[Any]]:
    """The export's rows: one per period and currency, then one "total" row per currency.
    Amounts are integer minor units; margin is a decimal string (empty without revenue)."""
    rows: list[list[Any]] = []
    for period in report.periods:
        for line in period.lines.values():
            rows.append(_row(period.start.isoformat(), period.end.isoformat(), line))
    for line in report.totals:
        rows.append(_row("total", "total", line))
    return rows


def _row(start: str, end: str, line: Line) -> list[Any]:
    margin = "" if line.margin is None else str(Decimal(str(line.margin)))
    return (
        [start, end, line.currency]
        + [line.revenue_by_stream[s] for s in STREAMS]
        + [line.revenue, line.fees, line.gross_profit]
        + [line.costs_by_category[c] for c in CATEGORIES]
        + [line.costs, line.net_profit, margin]
    )


def _filename(report: Pnl, extension: str) -> str:
    who = f"profile-{report.scope.profile_id}" if report.scope.profile_id else f"organization-{report.scope.organization_id}"
    return f"pnl-{who}-{report.range.start.date()}-{report.grain.value}.{extension}"


def to_csv(report: Pnl) -> ExportFile:
    """RFC 4180 CSV (stdlib csv), UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(table(report))
    return ExportFile(_filename(report, "csv"), CSV_TYPE, "utf-8", out.getvalue())


def to_xlsx(report: Pnl) -> ExportFile:
    """One sheet with the CSV's rows (amounts as integers), base64-encoded."""
    book = Workbook()
    sheet = book.active
    sheet.title = "P&L"
    sheet.append(HEADER)
    for row in table(report):
        sheet.append(row)
    notes = book.create_sheet("Notes")
    notes.append(["Amounts are integer minor units of the row's currency (minor digits per currency below)."])
    for currency in sorted({line.currency for line in report.totals}):
        notes.append([currency, minor_digits(currency)])
    buffer = io.BytesIO()
    book.save(buffer)
    return ExportFile(_filename(report, "xlsx"), XLSX_TYPE, "base64", base64.b64encode(buffer.getvalue()).decode())


async def export(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec, grain: Grain, fmt: str
) -> ExportFile:
    """The P&L query's numbers as a file, so a spreadsheet reconciles with the API to the cent."""
    report = await pnl(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, grain=grain
    )
    return to_xlsx(report) if fmt == "xlsx" else to_csv(report)
