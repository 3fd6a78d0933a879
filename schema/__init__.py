"""The GraphQL schema: types per domain, the root types in `schema.root`."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

log = logging.getLogger("pulsegraph.graphql")


class Schema(strawberry.Schema):
    """Refusals a client caused (bad input, auth, not found) are answers, not incidents:
    they are logged at debug level. Bugs are logged by `ErrorPolicy` with a request id."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        from app.errors import UserError

        for error in errors:
            if isinstance(error.original_error, UserError) or error.original_error is None:
                log.debug("refused: %s", error.message)
            else:
                super().process_errors([error], execution_context)


def build_schema(extensions: list | None = None) -> Schema:
    # Imported here: the root binds resolvers, which import the domain types of this package.
    from schema.root import Mutation, Query, Subscription

    return Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions or [])


__all__ = ["Schema", "build_schema"]
