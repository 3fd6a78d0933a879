"""Where API timings are taken: a GraphQL schema extension (each query or mutation by
operation name, per the caller's organization) and an ASGI middleware (each HTTP request by
method and route template). Both hand one duration to the process's recorder; websockets,
subscriptions and Server-Sent Events streams, which last as long as a client stays, are not
timed."""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import FieldNode, OperationType, get_operation_ast
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from app.services.system_health.recorder import recorder

NAME_LIMIT = 120
UNMATCHED_ROUTE = "(no route)"
EVENT_STREAM = b"text/event-stream"


class TimedOperations(SchemaExtension):
    """Times each query and mutation, from parsing to the result; an answer with errors counts
    as an error."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        duration_ms = (time.perf_counter() - started) * 1000.0
        context = self.execution_context
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document is not None else None
        if operation is not None and operation.operation == OperationType.SUBSCRIPTION:
            return
        result = context.result
        error = bool(context.pre_execution_errors) or bool(result is not None and result.errors)
        viewer = getattr(context.context, "viewer", None)
        recorder().record("graphql", operation_name(context.operation_name, operation), duration_ms, error=error,
                          organization_id=getattr(viewer, "organization_id", None))  # fmt: skip


def operation_name(declared: str | None, operation: object | None) -> str:
    """The operation's name; an anonymous one is named after its root fields."""
    if declared:
        return declared[:NAME_LIMIT]
    selections = getattr(getattr(operation, "selection_set", None), "selections", ())
    fields = sorted({s.name.value for s in selections if isinstance(s, FieldNode)})
    return ("{" + ",".join(fields) + "}")[:NAME_LIMIT] if fields else "(anonymous)"


class TimedRoutes:
    """Times each HTTP request by method and route template (`POST /track`,
    `GET /cohorts/{cohort_id}/members.csv`); a 5xx answer or an exception is an error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        streaming = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                streaming = any(k == b"content-type" and v.startswith(EVENT_STREAM) for k, v in message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # A Server-Sent Events stream lasts as long as its client: not a request time.
            if not streaming:
                record_route(scope, (time.perf_counter() - started) * 1000.0, error=status >= 500)


def record_route(scope: Scope, duration_ms: float, *, error: bool) -> None:
    route = scope.get("route")
    path = route.path if isinstance(route, BaseRoute) and hasattr(route, "path") else UNMATCHED_ROUTE
    recorder().record("http", f"{scope['method']} {path}", duration_ms, error=error)
