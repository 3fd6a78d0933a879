"""Profit and loss per period and currency, and its exports."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Granularity, ResolvedRange
from schema.costs import CostCategory
from schema.revenue import RevenueSource


@strawberry.type(description="Revenue of one stream, in the line's currency.")
class StreamAmount:
    stream: RevenueSource = strawberry.field(description="The stream.")
    amount_minor: int = strawberry.field(description="Minor units.")


@strawberry.type(description="Costs of one category, in the line's currency.")
class CategoryAmount:
    category: CostCategory = strawberry.field(description="The category.")
    amount_minor: int = strawberry.field(description="Minor units.")


@strawberry.type(description="One currency's profit and loss (all amounts in minor units of `currency`).")
class PnlLine:
    currency: str = strawberry.field(description="ISO 4217 code.")
    revenue_by_stream: list[StreamAmount] = strawberry.field(description="Revenue per stream (every stream listed).")
    revenue: int = strawberry.field(description="Sales minus refunds in the period (pending and failed excluded).")
    fees: int = strawberry.field(description="Platform + service + processor fees recorded on those ledger entries.")
    gross_profit: int = strawberry.field(description="revenue - fees.")
    costs_by_category: list[CategoryAmount] = strawberry.field(description="Cost entries per category (every category listed).")
    costs: int = strawberry.field(description="All cost entries of the period.")
    net_profit: int = strawberry.field(description="grossProfit - costs.")
    margin: float | None = strawberry.field(description="netProfit / revenue, 4 decimals; null when revenue is 0.")


@strawberry.type(description="One period of a P&L.")
class PnlPeriod:
    start: datetime = strawberry.field(description="Period start (clipped to the range).")
    end: datetime = strawberry.field(description="Period end (exclusive, clipped to the range).")
    lines: list[PnlLine] = strawberry.field(description="One line per currency with revenue, fees or costs.")


@strawberry.type(description="Profit and loss per local period and currency; nothing is converted.")
class Pnl:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Period size.")
    periods: list[PnlPeriod] = strawberry.field(description="Every period of the range, in order.")
    totals: list[PnlLine] = strawberry.field(description="The sum of the periods, per currency.")


@strawberry.enum(description="File format of an export.")
class ExportFormat(Enum):
    CSV = strawberry.enum_value("csv", description="RFC 4180 CSV, UTF-8 text.")
    XLSX = strawberry.enum_value("xlsx", description="An Excel workbook, base64-encoded.")


@strawberry.type(
    description="A file: one row per period and currency, then one 'total' row per currency; amounts in integer minor units."
)
class ExportFile:
    filename: str = strawberry.field(description="Suggested file name.")
    content_type: str = strawberry.field(description="MIME type.")
    encoding: str = strawberry.field(description="utf-8 (content is the text) or base64 (content is the bytes, base64).")
    content: str = strawberry.field(description="The file.")
