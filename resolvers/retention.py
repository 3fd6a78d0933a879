"""The retention insight (thin: convert, call, map)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.query_cost import series_length, size_lists_by_query_input
from app.services.insights import grammar
from app.services.insights import retention as service
from resolvers.common import guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.insight_inputs import to_breakdown, to_grain, to_matcher
from schema.common import Granularity
from schema.retention import (
    RetentionBreakdown,
    RetentionCohort,
    RetentionCohortKind,
    RetentionMode,
    RetentionQueryInput,
    RetentionResult,
)


def _bounded(value: object, low: int, high: int, default: int) -> int:
    return min(max(value, low), high) if isinstance(value, int) and not isinstance(value, bool) else default


def _cells(query: Mapping[str, Any]) -> int:
    return _bounded(query.get("periods"), 1, service.MAX_RETURN_PERIODS, service.DEFAULT_PERIODS) + 1


def _cohorts(query: Mapping[str, Any]) -> int:
    return series_length(query.get("range"), query.get("period") or "DAY")


def _breakdowns(query: Mapping[str, Any]) -> int:
    breakdown = query.get("breakdown")
    if not isinstance(breakdown, Mapping):
        return 1
    limit = _bounded(breakdown.get("limit"), 1, grammar.MAX_BREAKDOWN_LIMIT, grammar.DEFAULT_BREAKDOWN_LIMIT)
    return limit + 1  # the top values (a missing value may be one), and $other


size_lists_by_query_input({
    ("RetentionResult", "cohorts"): _cohorts, ("RetentionResult", "average"): _cells,
    ("RetentionResult", "breakdowns"): _breakdowns, ("RetentionBreakdown", "cohorts"): _cohorts,
    ("RetentionBreakdown", "average"): _cells, ("RetentionCohort", "counts"): _cells,
    ("RetentionCohort", "fractions"): _cells,
})  # fmt: skip


def to_cohort(cohort: service.Cohort) -> RetentionCohort:
    return RetentionCohort(start=cohort.start, size=cohort.size, counts=cohort.counts, fractions=cohort.fractions)


async def retention(
    info: Info, query: Annotated[RetentionQueryInput, strawberry.argument(description="What to count.")]
) -> RetentionResult:
    found = await service.retention(
        viewer=viewer_of(info), organization_id=query.organization_id, time_range=to_range_spec(query.range_),
        start=to_matcher(query.start_event, "query.startEvent"), back=to_matcher(query.return_event, "query.returnEvent"),
        period=to_grain(query.period), periods=query.periods,
        cohort_kind=service.CohortKind(query.cohort_kind.value) if query.cohort_kind else service.CohortKind.RECURRING,
        mode=service.Mode(query.mode.value) if query.mode else service.Mode.EXACT,
        breakdown=to_breakdown(query.breakdown, "query.breakdown"),
    )  # fmt: skip
    return RetentionResult(
        range=to_resolved_range(found.range), period=Granularity(found.period.value), periods=found.periods,
        cohort_kind=RetentionCohortKind(found.cohort_kind.value), mode=RetentionMode(found.mode.value),
        as_of=found.as_of, cohorts=[to_cohort(c) for c in found.cohorts], average=found.average,
        breakdowns=None if found.breakdowns is None else [
            RetentionBreakdown(value=b.value, other=b.other, cohorts=[to_cohort(c) for c in b.cohorts], average=b.average)
            for b in found.breakdowns
        ],
    )  # fmt: skip


@strawberry.type
class Query:
    """The retention insight, merged into the root by schema.root."""

    retention: RetentionResult = guarded(
        Access.ORG_READERS, retention,
        "Retention cohorts: per period of the range, the persons who did the start event, and who of them did the "
        "return event 1..periods periods later (persons follow identify links; periods are the organization's).",
    )
