"""The insight grammar's inputs read into the services' types, each error naming the field
it came from (e.g. `query.series[1].filters[0].value`)."""

from __future__ import annotations

from app.services.insights import grammar
from app.timebuckets import Grain
from schema.common import Granularity
from schema.insights import BreakdownInput, EventMatcherInput, PropertyFilterInput, PropertyKeyInput, TrendSeriesInput


def to_filters(values: list[PropertyFilterInput] | None, field: str) -> list[grammar.PropertyFilter]:
    if values is not None and len(values) > grammar.MAX_FILTERS:
        from app.errors import BadInput

        raise BadInput(f"at most {grammar.MAX_FILTERS} filters", field=field)
    return [
        grammar.property_filter(
            source=grammar.PropertySource(f.source.value),
            key=f.key,
            operator=grammar.FilterOperator(f.operator.value) if f.operator is not None else None,
            value=f.value,
            field=f"{field}[{i}]",
        )
        for i, f in enumerate(values or [])
    ]


def to_matcher(value: EventMatcherInput | TrendSeriesInput, field: str) -> grammar.EventMatcher:
    """An event and its filters; a trend series carries them the same way."""
    return grammar.event_matcher(event=value.event, filters=to_filters(value.filters, f"{field}.filters"), field=field)


def to_breakdown(value: BreakdownInput | None, field: str) -> grammar.Breakdown | None:
    if value is None:
        return None
    return grammar.breakdown(
        source=grammar.PropertySource(value.source.value),
        key=value.key,
        limit=value.limit,
        attribution=grammar.Attribution(value.attribution.value) if value.attribution is not None else None,
        step=value.step,
        field=field,
    )


def to_property_key(value: PropertyKeyInput, field: str) -> grammar.PropertyKey:
    return grammar.property_key(grammar.PropertySource(value.source.value), value.key, field)


def to_grain(value: Granularity | None, default: Grain = Grain.DAY) -> Grain:
    return Grain(value.value) if value is not None else default
