"""Query cost: refuse operations that would return too many objects, before they run.

Depth, alias and token limits bound the *text* of an operation; they do not bound what it
returns: `profiles(limit: 500) { ... }` under 30 aliases, or a time series of 1,500 hourly
buckets asked for six times, are short queries with large answers. `QueryCost` estimates
the number of objects and values an operation returns and refuses it with
`QUERY_TOO_COMPLEX` when the estimate is over `settings.query_cost_limit`:

- every selected field costs one per time it is resolved, so its cost is the product of
  the sizes of the lists above it;
- a list's size is its own bound, first found of: its `limit` (or `first`) argument (from
  the literal, the variables or the argument's default), or that of the page object it is
  in when smaller than the default (`fraudAlerts(first: 20) { alerts }`: 20 alerts); the bound of a type the domain
  bounds (money per currency, revenue per source, ...: `BOUNDED_LISTS`); one entry per
  bucket for the lists of a time series (a field with `range` and `granularity` arguments,
  e.g. `profileTimeseries { views }`, `pnl { periods }`), estimated from the range and
  capped at the resolver's own cap; a fixed length by field (`FIELD_LIST_SIZES`);
  `DEFAULT_LIST_SIZE` otherwise;
- the bucket count sizes the series' own lists and nothing inside them: a list within each
  bucket (money per currency in every point) counts its own bound, multiplied by the
  buckets above it, so the buckets are never counted twice;
- a report that takes one `query` input (`retention(query: {...})`) sizes the lists of its
  answer from that input: each (type, field) registered with `size_lists_by_query_input`
  (by the domain's resolvers) gets its size from the input, e.g. one cohort per period of
  the input's range, periods + 1 cells in each;
- introspection (`__schema`, `__type`, `__typename`) is free: it is answered from memory.

The estimate runs per request with the request's variables (a validation rule could not
see them and would be cached per document by `ValidationCache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from graphql import (
    ExecutionResult as GraphQLExecutionResult,
)
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

from app.timebuckets import PRESET_DAYS, Preset
from app.timebuckets import PRESET_GRAIN as TIMEBUCKET_PRESET_GRAIN

DEFAULT_LIST_SIZE = 100
# Lists whose length the domain bounds, whatever the data: one entry per currency (an
# organization deals in a handful), per revenue source, cost category or risk level. Without
# these, a plain revenue summary (money per source per currency) was priced like 100 x 100.
PER_CURRENCY = 10
BOUNDED_LISTS = {
    "Money": PER_CURRENCY,
    "RevenueChange": PER_CURRENCY,
    "PnlLine": PER_CURRENCY,
    "MonthlySummaryLine": PER_CURRENCY,
    "SourceRevenue": 5,  # booking, gift, subscription, affiliate, order
    "StreamAmount": 5,
    "CategoryAmount": 5,  # marketing, subscriptions, tools, platform_fees, other
    "CategoryCost": 5 * PER_CURRENCY,
    "PayoutStatus": 4,
    "FraudRiskCount": 3,
    "ReferrerCount": 10,  # the top 10
    "FunnelStep": 20,  # a funnel has at most 20 steps
    "FunnelBreakdown": 101,  # the top 100 values and other
    # experiments: at most 20 variants and 20 metrics (app.services.experiments), 3 status changes
    "VariantAnalysis": 20,
    "ExperimentVariant": 20,
    "ExperimentVariantSummary": 20,
    "VariantExposures": 20,
    "ExperimentMetric": 20,
    "ExperimentMetricResult": 20,
    "ExperimentStatusChange": 3,
}
# Lists of scalars with a fixed length, by (type, field): a Bayesian risk is [control, variant].
FIELD_LIST_SIZES = {("VariantAnalysis", "risk"): 2}
MAX_SERIES_BUCKETS = 1500  # resolvers refuse longer series (see app.timebuckets)
LIMIT_ARGUMENTS = ("limit", "first")
# The span of each preset of app.timebuckets' one family, by its GraphQL name.
PRESET_SPAN = {
    Preset.LAST_24_HOURS.name: timedelta(hours=24),
    **{preset.name: timedelta(days=days) for preset, days in PRESET_DAYS.items()},
    Preset.LAST_12_MONTHS.name: timedelta(days=366),
}
PRESET_GRAIN = {preset.name: grain.name for preset, grain in TIMEBUCKET_PRESET_GRAIN.items()}
GRAIN_SPAN = {
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
    "WEEK": timedelta(days=7),
    "MONTH": timedelta(days=28),  # the shortest month: an upper bound on the bucket count
}


# (type, field) -> its list's size, from the report's `query` input (see the module's notes).
QUERY_INPUT_SIZES: dict[tuple[str, str], Callable[[Mapping[str, Any]], int]] = {}


def size_lists_by_query_input(sizes: Mapping[tuple[str, str], Callable[[Mapping[str, Any]], int]]) -> None:
    """Declare how a report's query input sizes lists of its answer."""
    QUERY_INPUT_SIZES.update(sizes)


class QueryCost(SchemaExtension):
    """Refuse an operation whose estimated result size exceeds `max_cost` (QUERY_TOO_COMPLEX)."""

    def __init__(self, *, max_cost: int, default_list_size: int = DEFAULT_LIST_SIZE) -> None:
        self.max_cost = max_cost
        self.default_list_size = default_list_size

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            cost = estimate_cost(
                context.schema._schema,
                document,
                variables=context.variables or {},
                operation_name=context.operation_name,
                default_list_size=self.default_list_size,
            )
            if cost > self.max_cost:
                context.result = GraphQLExecutionResult(
                    data=None,
                    errors=[
                        GraphQLError(
                            f"query is too complex: it could return about {cost} objects, the limit is "
                            f"{self.max_cost}; ask for smaller limits, shorter ranges or fewer fields",
                            extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost, "limit": self.max_cost},
                        )
                    ],
                )
        yield


def estimate_cost(
    schema: GraphQLSchema,
    document: Any,
    *,
    variables: Mapping[str, Any],
    operation_name: str | None = None,
    default_list_size: int = DEFAULT_LIST_SIZE,
) -> int:
    """The estimated number of objects and values the selected operation returns."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations:
        return 0
    operation = operations[0]
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    walker = _Walker(schema, fragments, variables, default_list_size)
    return walker.selection_cost(operation.selection_set, root, multiplier=1, series=None, seen=frozenset(), report=None)


class _Walker:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, Any], variables: Mapping[str, Any], default: int) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.default = default

    def selection_cost(
        self, selection_set: SelectionSetNode | None, parent: Any, *, multiplier: int, series: int | None,
        seen: frozenset[str], report: Mapping[str, Any] | None,
    ) -> int:  # fmt: skip
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent, multiplier=multiplier, series=series, seen=seen, report=report)
            elif isinstance(selection, InlineFragmentNode):
                target = self._type_condition(selection, parent)
                total += self.selection_cost(
                    selection.selection_set, target, multiplier=multiplier, series=series, seen=seen, report=report
                )
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:  # validation reports cycles and unknown fragments
                    continue
                target = self._type_condition(fragment, parent)
                total += self.selection_cost(
                    fragment.selection_set, target, multiplier=multiplier, series=series, seen=seen | {name}, report=report
                )
        return total

    def field_cost(
        self, node: FieldNode, parent: Any, *, multiplier: int, series: int | None, seen: frozenset[str],
        report: Mapping[str, Any] | None,
    ) -> int:  # fmt: skip
        name = node.name.value
        if name.startswith("__"):
            return 0
        field = getattr(parent, "fields", {}).get(name) if parent is not None else None
        if field is None:
            return multiplier
        arguments = self._arguments(node, field)
        if "range" in arguments and "granularity" in field.args:
            series = series_length(arguments.get("range"), arguments.get("granularity") or _preset_grain(arguments.get("range")))
        elif not _is_list(field.type) and (page := _limit(arguments)) is not None:
            # A page (`persons(first: 20) { persons }`): its list holds at most `first` entries.
            # Only ever a tighter bound than the default: a list's own items are priced by their
            # default sizes, which a page of the largest size would multiply past any limit.
            series = min(page, self.default)
        if isinstance(arguments.get("query"), Mapping):
            report = arguments["query"]
        sizer = QUERY_INPUT_SIZES.get((getattr(parent, "name", ""), name)) if report is not None else None
        declared = sizer(report) if sizer and report is not None else FIELD_LIST_SIZES.get((getattr(parent, "name", ""), name))
        size, inner = self._list_size(field.type, arguments, series, declared)
        count = multiplier * size
        if _is_list(field.type):
            series = None  # the buckets are counted in `count`; lists inside them have bounds of their own
        return count + self.selection_cost(
            node.selection_set, inner, multiplier=count, series=series, seen=seen, report=report
        )

    def _list_size(
        self, gtype: Any, arguments: Mapping[str, Any], series: int | None, declared: int | None = None
    ) -> tuple[int, Any]:
        """(entries per resolution, the named type inside), for nested lists the product."""
        size = 1
        while isinstance(gtype, GraphQLNonNull | GraphQLList):
            if isinstance(gtype, GraphQLList):
                size *= max(1, declared) if declared is not None else self._one_list(arguments, series, _named(gtype))
                arguments, series, declared = {}, None, None  # the arguments size the outermost list only
            gtype = gtype.of_type
        return size, gtype if isinstance(gtype, GraphQLObjectType) or hasattr(gtype, "fields") else None

    def _one_list(self, arguments: Mapping[str, Any], series: int | None, element: str | None) -> int:
        limit = _limit(arguments)
        if limit is not None:
            return limit
        if element in BOUNDED_LISTS:
            return BOUNDED_LISTS[element]
        if series is not None:
            return series
        return self.default

    def _arguments(self, node: FieldNode, field: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, arg in field.args.items():
            if arg.default_value is not None and not _is_undefined(arg.default_value):
                values[name] = arg.default_value
        for argument in node.arguments or ():
            values[argument.name.value] = self._value(argument.value)
        return values

    def _value(self, node: ValueNode) -> Any:
        try:
            return value_from_ast_untyped(node, self.variables)
        except Exception:  # noqa: BLE001 - malformed values are validation's to report
            return None

    def _type_condition(self, node: Any, parent: Any) -> Any:
        condition = getattr(node, "type_condition", None)
        if condition is None:
            return parent
        return self.schema.get_type(condition.name.value) or parent


def _limit(arguments: Mapping[str, Any]) -> int | None:
    """The `limit` or `first` a field was given (or defaults to)."""
    for name in LIMIT_ARGUMENTS:
        value = arguments.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(1, value)
    return None


def _is_list(gtype: Any) -> bool:
    while isinstance(gtype, GraphQLNonNull):
        gtype = gtype.of_type
    return isinstance(gtype, GraphQLList)


def _named(gtype: Any) -> str | None:
    """The name of the type a (possibly nested, non-null) list holds."""
    while isinstance(gtype, GraphQLNonNull | GraphQLList):
        gtype = gtype.of_type
    return getattr(gtype, "name", None)


def _is_undefined(value: Any) -> bool:
    return type(value).__name__ == "UndefinedType"


def _preset_grain(range_value: Any) -> str:
    preset = range_value.get("preset") if isinstance(range_value, Mapping) else None
    return PRESET_GRAIN.get(str(getattr(preset, "name", preset)).upper(), "DAY")


def series_length(range_value: Any, granularity: Any) -> int:
    """Buckets of a time series over `range` (a preset or from/to), capped like the resolver."""
    grain = GRAIN_SPAN.get(str(getattr(granularity, "name", granularity)).upper(), GRAIN_SPAN["DAY"])
    span: timedelta | None = None
    if isinstance(range_value, Mapping):
        preset = range_value.get("preset")
        if preset is not None:
            span = PRESET_SPAN.get(str(getattr(preset, "name", preset)).upper())
        else:
            start = _instant(range_value.get("from"))
            end = _instant(range_value.get("to")) or datetime.now(UTC)
            if start is not None:
                span = end - start
    if span is None:
        return MAX_SERIES_BUCKETS
    buckets = math.ceil(max(span, timedelta(0)) / grain) + 1  # a partial bucket at each end
    return max(1, min(buckets, MAX_SERIES_BUCKETS))


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
