"""Strawberry wiring: the request context, websocket authentication and error mapping.

Resolvers read `info.context.viewer`; services raise `app.errors.UserError`; the
`ErrorPolicy` extension turns those into errors with `extensions.code` and masks
everything else behind a request id that is also written to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from graphql import FieldNode, OperationType, get_operation_ast
from graphql.error import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from app.auth import (
    ANONYMOUS,
    CSRF_HEADER,
    SESSION_COOKIE,
    Viewer,
    is_revoked,
    viewer_from_cookie,
    viewer_from_credential,
)
from app.errors import QueryTimeout, Unavailable, UserError
from app.fanout import LIVE_OPERATION, LiveOperation
from app.graphiql import graphiql_page
from app.query_cost import QueryCost
from app.result_cache import result_cache
from app.services.system_health.timing import TimedOperations
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


def _is_user_error(error: GraphQLError) -> bool:
    return isinstance(error.original_error, UserError)


INGESTION_MUTATIONS = frozenset({"trackEvent", "trackEvents", "publishDomainEvents"})


class InvalidateOnWrite(SchemaExtension):
    """After a mutation other than ingestion (settings, costs, rules, rates, suspensions: what
    reports read besides events), no cached report answer is served again, in any process.
    Ingested events reach reports through the worker, which announces what it processed."""

    async def on_execute(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document is not None else None
        if operation is None or operation.operation != OperationType.MUTATION:
            return
        fields = {s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)}
        if fields - INGESTION_MUTATIONS:
            await result_cache().announce(None)


class ErrorPolicy(MaskErrors):
    """UserErrors pass with their code; GraphQL validation and variable coercion errors pass
    as they are; anything else is a bug: logged with the request id, masked for the client."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._present(error) for error in errors]

    def _present(self, error: GraphQLError) -> GraphQLError:
        original = query_timeout(error.original_error) or error.original_error
        if isinstance(original, UserError):
            return GraphQLError(
                original.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions=original.as_extensions(),
            )
        if original is None or isinstance(original, GraphQLError):
            # No original: the document failed validation. A GraphQLError inside: a variable
            # failed its scalar's coercion ("Float cannot represent ..."): the client's input.
            extensions = dict(error.extensions or {})
            extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED" if original is None else "BAD_USER_INPUT")
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


def query_timeout(error: BaseException | None) -> QueryTimeout | None:
    """A statement PostgreSQL cancelled at `statement_timeout`, however the ORM wrapped it."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, asyncpg.QueryCanceledError):
            return QueryTimeout("the query ran too long and was cancelled; ask for a shorter range or less data")
        error = error.__cause__ or error.__context__
        seen += 1
    return None


class SyntaxSafeParserCache(ParserCache):
    """ParserCache parses in its `on_parse` hook, outside the try that turns a syntax error
    into a pre-execution error. Over HTTP something above catches it; on a websocket the
    subscription task just dies: no 4400, no error, a bare `complete` and a logged traceback.
    A query that does not parse is left to strawberry's own parser, which reports it
    (graphql-transport-ws: close 4400; graphql-ws: an `error` message)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
        except GraphQLError:
            pass
        yield


def schema_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories, not instances: an instance would be shared by concurrent requests.

    The depth and alias limits are validation rules that strawberry's limiters create as a
    new class per instance, so with one instance per request ValidationCache (keyed by the
    rule classes) never hit and every request, and every websocket subscribe, was validated
    again (a quarter of the API's CPU while 1,000 subscribers connected). The rule classes
    are built once here and shared; they hold only the limits."""
    limits = [
        *QueryDepthLimiter(max_depth=settings.query_depth_limit).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.query_alias_limit).validation_rules,
    ]
    timed = [TimedOperations] if settings.api_timings else []
    return [
        *timed,
        functools.partial(AddValidationRules, limits),
        functools.partial(MaxTokensLimiter, max_token_count=settings.query_token_limit),
        functools.partial(QueryCost, max_cost=settings.query_cost_limit),
        functools.partial(SyntaxSafeParserCache, maxsize=512),
        functools.partial(ValidationCache, maxsize=512),
        ErrorPolicy,
        InvalidateOnWrite,
    ]


REVOKED_CLOSE = (4403, "Forbidden")  # graphql-transport-ws's own code for a refused credential


class OpenSockets:
    """The acknowledged websocket connections of this process by the revocation handles of
    the credential that opened them (its token, session, key), so that the connections of a
    revoked credential are closed, not just its new ones refused."""

    def __init__(self) -> None:
        self._by_token: dict[str, set[RevocableSocket]] = {}

    def add(self, token_id: str, socket: RevocableSocket) -> None:
        self._by_token.setdefault(token_id, set()).add(socket)

    def discard(self, token_id: str, socket: RevocableSocket) -> None:
        sockets = self._by_token.get(token_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._by_token[token_id]

    async def close_revoked(self, token_ids: frozenset[str]) -> None:
        """The revocation watcher's listener: close every connection of these tokens."""
        doomed = {socket for token_id in token_ids for socket in self._by_token.pop(token_id, ())}
        if doomed:
            log.info("closing %d websocket connections of revoked tokens", len(doomed))
            await asyncio.gather(*(socket.close_revoked() for socket in doomed))


class RevocableSocket:
    """Mixed into both protocol handlers: once `connection_init` is acknowledged, the
    connection is listed in the view's OpenSockets under its token's id until it ends."""

    view: Any
    context: Any
    websocket: Any
    connection_acknowledged: bool
    _listed_as: tuple[str, ...] = ()

    async def _list_if_acknowledged(self) -> None:
        self._unlist()  # a legacy client may send connection_init again, with another token
        viewer = getattr(self.context, "viewer", None)
        handles = viewer.revocation_handles if isinstance(viewer, Viewer) else ()
        open_sockets = getattr(self.view, "open_sockets", None)
        if self.connection_acknowledged and handles and open_sockets is not None:
            for handle in handles:
                open_sockets.add(handle, self)
            self._listed_as = handles
            if is_revoked(viewer):  # revoked while the acknowledgement was being sent
                self._unlist()
                await self.close_revoked()

    def _unlist(self) -> None:
        for handle in self._listed_as:
            self.view.open_sockets.discard(handle, self)
        self._listed_as = ()

    async def close_revoked(self) -> None:
        """Close with 4403, as `connection_init` with the token would now be refused; the
        protocol handler then ends the connection's operations as for any close."""
        self._unlist()
        try:
            await self.websocket.close(code=REVOKED_CLOSE[0], reason=REVOKED_CLOSE[1])
        except Exception as exc:  # noqa: BLE001 - already closing or gone: nothing left to close
            log.debug("closing a revoked token's websocket: %r", exc)


class LiveSocketHandlers:
    """Tells each websocket operation's subscription resolver where its results go, so that
    identical subscriptions share one execution and one encoding per event (app/fanout.py).
    Mixed into both protocol handlers; everything else is strawberry's."""

    schema: Any
    websocket: Any

    def _live_operation(
        self, op_id: str, query: str, variables: dict[str, Any] | None, operation_name: str | None,
        frame_prefix: str, is_open: Callable[[], bool],
    ) -> LiveOperation | None:  # fmt: skip
        send_text = getattr(getattr(self.websocket, "ws", None), "send_text", None)
        if send_text is None or not isinstance(query, str):
            return None  # not the ASGI adapter: strawberry's path for everything
        return LiveOperation(
            schema=self.schema._schema,
            executor_class=self.schema.execution_context_class,
            query=query,
            variables=variables if isinstance(variables, dict) else None,
            operation_name=operation_name if isinstance(operation_name, str) else None,
            frame_prefix=frame_prefix.replace("{id}", orjson.dumps(op_id).decode()),
            send_text=send_text,
            is_open=is_open,
        )


class KeepAliveTransportWSHandler(RevocableSocket, LiveSocketHandlers, BaseGraphQLTransportWSHandler):
    """graphql-transport-ws with server keep-alives. Strawberry only sends them on the legacy
    protocol ("ka"); here the server sends the protocol's `ping` every `keep_alive_interval`
    once the connection is acknowledged, so that proxies keep an idle subscription open and
    clients (graphql-ws's `on.ping`, gql's `keep_alive_timeout`) can tell a live server from
    a dead one. Clients answer with `pong`; a client's own `ping` gets a `pong`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pinger: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        await self._list_if_acknowledged()
        if self.connection_acknowledged and self.view.keep_alive and self._pinger is None:
            self._pinger = asyncio.create_task(self._ping_forever(float(self.view.keep_alive_interval or 15)))

    async def _ping_forever(self, interval: float) -> None:
        with contextlib.suppress(Exception):  # the socket is gone: shutdown() follows
            while True:
                await asyncio.sleep(interval)
                await self.send_message({"type": "ping"})

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        """The operation's task: strawberry's, with the operation visible to its resolver."""
        LIVE_OPERATION.set(self._live_operation(
            operation.id, operation.query, operation.variables, operation.operation_name,
            '{"id":{id},"type":"next","payload":', lambda: self.operations.get(operation.id) is operation,
        ))  # fmt: skip
        await super().run_operation(operation)

    async def shutdown(self) -> None:
        self._unlist()
        if self._pinger is not None:
            self._pinger.cancel()
            await asyncio.wait([self._pinger])
        await super().shutdown()


class LegacyWSHandler(RevocableSocket, LiveSocketHandlers, BaseGraphQLWSHandler):
    """graphql-ws (the legacy subprotocol) with shared live results, as above. The protocol
    defines no close codes; a revoked token's connection closes with 4403 all the same."""

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        await self._list_if_acknowledged()

    async def cleanup(self) -> None:
        self._unlist()
        await super().cleanup()

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        task = asyncio.current_task()
        LIVE_OPERATION.set(self._live_operation(
            operation_id, query, variables, operation_name,
            '{"type":"data","id":{id},"payload":', lambda: self.tasks.get(operation_id) is task,
        ))  # fmt: skip
        await super().handle_async_results(operation_id, query, operation_name, variables)


class PulsegraphGraphQL(GraphQL):
    """One app for HTTP and both websocket subprotocols."""

    graphql_transport_ws_handler_class = KeepAliveTransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_sockets = OpenSockets()

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL with its scripts served by this API instead of a CDN (app/graphiql.py)."""
        return graphiql_page(request)

    def decode_json(self, data: str | bytes) -> object:
        """orjson: a 1,000-event trackEvents body took 7% of the API's CPU in the stdlib decoder."""
        return orjson.loads(data)

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        context = Context(request=request, response=response)
        if isinstance(request, Request):
            # A bad token is reported by the first resolver that needs a viewer, with the
            # reason (expired, wrong key, ...), rather than as an opaque HTTP 401.
            try:
                context.viewer = await viewer_of_request(request)
            except UserError as exc:
                context.auth_error = exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("credential lookup failed: %s", exc)
                context.auth_error = Unavailable("database unavailable; nothing was done, retry")
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """Authenticate `connection_init`: `{"Authorization": "Bearer <jwt>"}`, `{"token": ...}`
        or `{"headers": {"Authorization": ...}}`."""
        params = context.connection_params or {}
        credential = _credential_from(params)
        cookie = context.request.cookies.get(SESSION_COOKIE) if not credential else None
        if not credential and not cookie:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": "connection_init needs a token"})
        try:
            if cookie:  # a browser signed in by cookie: connection_init must carry its csrfToken
                context.viewer = await viewer_from_cookie(cookie, csrf=str(params.get("csrfToken") or ""), needs_csrf=True)
            else:
                context.viewer = await viewer_from_credential(str(credential))
        except UserError as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from exc
        if not context.viewer.can_read:
            raise ConnectionRejectionError({"code": "FORBIDDEN", "message": "this credential cannot subscribe"})
        return None


async def viewer_of_request(request: Request) -> Viewer:
    """The Authorization header's credential; without one, the session cookie (POSTs must
    then carry the CSRF header)."""
    credential = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE) if not credential else None
    if cookie:
        csrf = request.headers.get(CSRF_HEADER)
        return await viewer_from_cookie(cookie, csrf=csrf, needs_csrf=request.method not in ("GET", "HEAD"))
    return await viewer_from_credential(credential)


def _credential_from(params: dict[str, Any]) -> str | None:
    """The token from `connection_init`, in the shapes clients send it: GraphiQL passes its
    header editor's JSON as the payload, Apollo-style clients nest it under `headers`."""
    for source in (params, params.get("headers") if isinstance(params.get("headers"), dict) else {}):
        for key, value in source.items():
            if key.lower() in ("authorization", "token") and value:
                return str(value)
    return None
