"""Strawberry wiring: the request context, websocket authentication and error mapping.

Resolvers read `info.context.viewer`; services raise `app.errors.UserError`; the
`ErrorPolicy` extension turns those into errors with `extensions.code` and masks
everything else behind a request id that is also written to the log.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from graphql.error import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from app.auth import ANONYMOUS, Viewer, viewer_from_credential
from app.errors import Unavailable, UserError
from app.settings import Settings

log = logging.getLogger("pulsegraph.graphql")


@dataclass
class Context:
    """Per HTTP request, or per websocket connection (then `viewer` is set at connect)."""

    request: Request | WebSocket
    response: Response | WebSocket | None
    viewer: Viewer = ANONYMOUS
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    connection_params: dict[str, Any] | None = None
    auth_error: UserError | None = None

    @property
    def app_state(self) -> Any:
        return self.request.app.state


def _is_user_error(error: GraphQLError) -> bool:
    return isinstance(error.original_error, UserError)


class ErrorPolicy(MaskErrors):
    """UserErrors pass with their code; GraphQL validation errors pass as they are;
    anything else is a bug: logged with the request id, masked for the client."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._present(error) for error in errors]

    def _present(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, UserError):
            return GraphQLError(
                original.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions=original.as_extensions(),
            )
        if original is None:
            extensions = dict(error.extensions or {})
            extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
            error.extensions = extensions
            return error
        request_id = self._request_id()
        log.error("unexpected error [request %s]", request_id, exc_info=original)
        return GraphQLError(
            f"Internal error; quote request id {request_id} when reporting it.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )

    def _request_id(self) -> str:
        context = getattr(self.execution_context, "context", None)
        return getattr(context, "request_id", None) or uuid.uuid4().hex[:16]


def schema_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories, not instances: an instance would be shared by concurrent requests."""
    return [
        functools.partial(QueryDepthLimiter, max_depth=settings.query_depth_limit),
        functools.partial(MaxAliasesLimiter, max_alias_count=settings.query_alias_limit),
        functools.partial(MaxTokensLimiter, max_token_count=settings.query_token_limit),
        functools.partial(ParserCache, maxsize=512),
        functools.partial(ValidationCache, maxsize=512),
        ErrorPolicy,
    ]


class PulsegraphGraphQL(GraphQL):
    """One app for HTTP and both websocket subprotocols."""

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        context = Context(request=request, response=response)
        if isinstance(request, Request):
            # A bad token is reported by the first resolver that needs a viewer, with the
            # reason (expired, wrong key, ...), rather than as an opaque HTTP 401.
            try:
                context.viewer = await viewer_from_credential(request.headers.get("authorization"))
            except UserError as exc:
                context.auth_error = exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("credential lookup failed: %s", exc)
                context.auth_error = Unavailable("database unavailable; nothing was done, retry")
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """Authenticate `connection_init`: `{"Authorization": "Bearer <jwt>"}`, `{"token": ...}`
        or `{"headers": {"Authorization": ...}}`."""
        credential = _credential_from(context.connection_params or {})
        if not credential:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": "connection_init needs a token"})
        try:
            context.viewer = await viewer_from_credential(str(credential))
        except UserError as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from exc
        if not context.viewer.can_read:
            raise ConnectionRejectionError({"code": "FORBIDDEN", "message": "this credential cannot subscribe"})
        return None


def _credential_from(params: dict[str, Any]) -> str | None:
    """The token from `connection_init`, in the shapes clients send it: GraphiQL passes its
    header editor's JSON as the payload, Apollo-style clients nest it under `headers`."""
    for source in (params, params.get("headers") if isinstance(params.get("headers"), dict) else {}):
        for key, value in source.items():
            if key.lower() in ("authorization", "token") and value:
                return str(value)
    return None
