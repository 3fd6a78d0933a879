"""Input objects the services take as plain dicts, and list arguments handed over as they are.

The ingestion service takes events as dicts keyed by the Python field names of
`TrackEventInput`. Strawberry's generic argument conversion turns every item of a list
argument into an object, walking a chain of type checks per item: for a `trackEvents`
batch of 1,000 events that cost about as much as graphql-core's own coercion of the batch,
spent making objects the service only wants as dicts.

- `as_plain_dicts` makes graphql-core's coercion produce those dicts: each GraphQL input
  field's `out_name` (graphql-core's hook for this) becomes the Python field name, and
  Strawberry's `from_input` hook keeps the coerced dict as it is. Every optional field must
  have a default, so every key is present, as the services expect.
- `resolved_as_coerced` calls one field's resolver with its arguments exactly as
  graphql-core coerced them (for a list of plain-dict inputs: the list of dicts), without
  Strawberry's conversion of each item. It refuses a field with permission classes or
  field extensions, whose hooks that path would skip.

Validation is unchanged: graphql-core checks types, required and unknown fields before any
resolver runs, and reports errors as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import strawberry
from graphql import (
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    get_named_type,
    is_non_null_type,
    is_scalar_type,
)
from graphql.pyutils import Undefined
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

_PLAIN = "pulsegraph-plain-dict"  # marks the GraphQL input types `as_plain_dicts` changed


def as_plain_dicts(schema: strawberry.Schema, *inputs: type) -> None:
    """Coerce values of these input types to dicts keyed by their Python field names."""
    names = schema.config.name_converter
    for cls in inputs:
        definition: StrawberryObjectDefinition = cls.__strawberry_definition__
        graphql_type = schema._schema.get_type(names.from_type(definition))
        assert isinstance(graphql_type, GraphQLInputObjectType), definition.name
        for field in definition.fields:
            graphql_field = graphql_type.fields[names.from_field(field)]
            if graphql_field.default_value is Undefined and not is_non_null_type(graphql_field.type):
                raise TypeError(f"{definition.name}.{field.python_name}: a plain-dict input field needs a default")
            graphql_field.out_name = field.python_name
        graphql_type.extensions = {**graphql_type.extensions, _PLAIN: True}
        definition.from_input = _as_coerced


def _as_coerced(cls: type, value: Mapping[str, Any], context: Any) -> Mapping[str, Any]:
    """Strawberry's `from_input` hook: the coerced dict already has the Python names."""
    return value


def resolved_as_coerced(schema: strawberry.Schema, type_name: str, field_name: str) -> None:
    """Call the resolver of `type_name.field_name` with graphql-core's coerced arguments."""
    graphql_type = schema._schema.get_type(type_name)
    assert isinstance(graphql_type, GraphQLObjectType), type_name
    definition: StrawberryObjectDefinition = graphql_type.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
    names = schema.config.name_converter
    field = next(f for f in definition.fields if names.from_field(f) == field_name)
    if field.permission_classes or field.extensions or field.base_resolver is None:
        raise TypeError(f"{type_name}.{field_name}: permission classes and field extensions need Strawberry's path")
    graphql_field = graphql_type.fields[field_name]
    for name, argument in graphql_field.args.items():
        named = get_named_type(argument.type)
        if not is_scalar_type(named) and named.extensions.get(_PLAIN) is not True:
            raise TypeError(f"{type_name}.{field_name}({name}:): only scalars and plain-dict inputs pass as coerced")
    graphql_field.resolve = _direct_resolver(schema, field)


def _direct_resolver(schema: strawberry.Schema, field: StrawberryField) -> Callable[..., Any]:
    resolver = field.base_resolver
    assert resolver is not None
    function = resolver.wrapped_func
    python_names = {schema.config.name_converter.from_argument(a): a.python_name for a in resolver.arguments}
    info_name = resolver.info_parameter.name if resolver.info_parameter else None
    info_class = schema.config.info_class

    def resolve(source: Any, info: GraphQLResolveInfo, **arguments: Any) -> Any:
        kwargs = {python_names[name]: value for name, value in arguments.items()}
        if info_name is not None:
            kwargs[info_name] = info_class(_raw_info=info, _field=field)
        return function(**kwargs)

    return resolve


__all__ = ["as_plain_dicts", "resolved_as_coerced"]
