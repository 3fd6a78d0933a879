"""Profit and loss and its exports (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import pnl as service
from app.timebuckets import Grain
from resolvers.common import RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.revenue import GranularityArg, OrganizationArg, ProfileArg
from schema.costs import CostCategory
from schema.pnl import CategoryAmount, ExportFile, ExportFormat, Pnl, PnlLine, PnlPeriod, StreamAmount
from schema.revenue import RevenueSource


def to_line(line: service.Line) -> PnlLine:
    return PnlLine(
        currency=line.currency,
        revenue_by_stream=[StreamAmount(stream=RevenueSource(s), amount_minor=a) for s, a in line.revenue_by_stream.items()],
        revenue=line.revenue, fees=line.fees, gross_profit=line.gross_profit,
        costs_by_category=[CategoryAmount(category=CostCategory(c), amount_minor=a) for c, a in line.costs_by_category.items()],
        costs=line.costs, net_profit=line.net_profit, margin=line.margin,
    )  # fmt: skip


async def pnl(
    info: Info,
    range_: RangeArg,
    granularity: GranularityArg,
    profile_id: ProfileArg = None,
    organization_id: OrganizationArg = None,
) -> Pnl:
    found = await service.pnl(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id,
        time_range=to_range_spec(range_), grain=Grain(granularity.value),
    )  # fmt: skip
    return Pnl(
        range=to_resolved_range(found.range), granularity=granularity,
        periods=[PnlPeriod(start=p.start, end=p.end, lines=[to_line(x) for x in p.lines.values()]) for p in found.periods],
        totals=[to_line(x) for x in found.totals],
    )  # fmt: skip


async def pnl_export(
    info: Info,
    range_: RangeArg,
    granularity: GranularityArg,
    profile_id: ProfileArg = None,
    organization_id: OrganizationArg = None,
    format_: Annotated[
        ExportFormat | None, strawberry.argument(name="format", description="CSV (default) or XLSX.")
    ] = None,
) -> ExportFile:
    found = await service.export(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id,
        time_range=to_range_spec(range_), grain=Grain(granularity.value), fmt=(format_ or ExportFormat.CSV).value,
    )  # fmt: skip
    return ExportFile(filename=found.filename, content_type=found.content_type, encoding=found.encoding, content=found.content)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The pnl domain's reads, merged into the root by schema.root."""

    pnl: Pnl = guarded(
        Access.READERS, pnl,
        "Profit and loss per period and currency: revenue by stream, fees, costs by category, gross and net profit, margin.",
    )
    pnl_export: ExportFile = guarded(
        Access.READERS, pnl_export,
        "The P&L as a CSV or XLSX file with exactly the query's numbers.",
    )
