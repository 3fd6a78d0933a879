"""The GraphQL schema: types per domain, the root types in `schema.root`."""

from __future__ import annotations

import strawberry
from strawberry.extensions import SchemaExtension

from schema.root import Mutation, Query, Subscription


def build_schema(extensions: list | None = None) -> strawberry.Schema:
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions or [])


def default_schema() -> strawberry.Schema:
    """The schema as served, with the default settings' safety extensions."""
    from app.graphql import schema_extensions
    from app.settings import get_settings

    return build_schema(schema_extensions(get_settings()))


__all__ = ["build_schema", "default_schema", "SchemaExtension"]
