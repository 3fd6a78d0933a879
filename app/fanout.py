"""Live fan-out: one GraphQL execution and one JSON encoding per (event, operation shape).

Strawberry runs every websocket subscription as its own pipeline: for each bus message,
each subscriber's task goes through graphql-core's source-to-response mapping, executes
the selection, runs the schema extensions' stream hooks, builds a message dict and
JSON-encodes it. With 1,000 subscribers of one profile that is 1,000 identical executions
per view, and it cost the API about 200 µs of CPU per delivered frame.

The result of a subscription event depends only on the event and the operation's shape:
its document, operation name and variables (access is checked once, when the
subscription starts, and the live types' fields read nothing but the event). So the
first subscriber of a shape to see an event executes the selection and encodes
`{"data": ...}` once; every other subscriber of that shape reuses the encoded text and
only wraps it in its protocol's frame with its own operation id, then sends it.

How it is wired, and why it stays small:

* `LiveSocketHandlers` (mixed into both protocol handlers in app/graphql.py) sets
  `LIVE_OPERATION` inside each operation's task: the operation's id, document, variables
  and its socket. Context variables are copied into tasks, so the subscription resolver
  running inside that task sees exactly its own operation.
* Every live resolver follows its channel through `resolvers.common.follow_channel`, which
  subscribes to the bus (access was checked before) and hands each bus payload to
  `LiveOperation.deliver`. When that returns
  False (no shared result: the execution had errors, or the send failed) the resolver
  yields the event instead, and strawberry's own path executes, masks errors and sends
  it exactly as it always did. Errors raised by the resolver (access, SLOW_CONSUMER)
  never reach this module: they take strawberry's path too.
* The shared execution uses the schema's own executor class, without a context value: a
  field that needed the viewer would fail there and fall back to the per-subscriber path
  rather than leak one subscriber's view to another.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLSchema, parse
from graphql.execution import ExecutionResult, Executor

log = logging.getLogger("pulsegraph.fanout")

SHAPES_KEPT = 256  # distinct (document, operation, variables) whose executor is kept
EVENTS_KEPT = 64  # recent bus payloads whose encoded results are kept

ShapeKey = tuple[int, str, str | None, bytes]


@dataclass(slots=True)
class Shape:
    """A validated subscription operation, built once and executed once per event."""

    executor: Executor | None  # None: cannot be shared (its events take strawberry's path)

    def execute(self, event: object) -> str | None:
        """`{"data": ...}` as JSON text, or None when the event must not be shared."""
        if self.executor is None:
            return None
        result = self.executor.build_per_event_executor(event).execute_operation(False)
        if not isinstance(result, ExecutionResult) or result.errors:
            _close_awaitable(result)
            return None  # errors are masked, logged and reported by strawberry's path
        return orjson.dumps({"data": result.data}).decode()


class FanOut:
    """Per process: shapes by key, and each recent event's encoded result per shape."""

    def __init__(self) -> None:
        self._shapes: OrderedDict[ShapeKey, Shape] = OrderedDict()
        # id(payload) -> (payload, {shape key: encoded or None}). The payload is held so
        # that its id cannot be reused by another object while the entry exists.
        self._events: OrderedDict[int, tuple[object, dict[ShapeKey, str | None]]] = OrderedDict()

    def encoded(self, key: ShapeKey, build: Callable[[], Shape], payload: object, convert: Callable[[Any], object]) -> str | None:
        """The shared encoding of `payload` for the shape `key`; executed on first request."""
        entry = self._events.get(id(payload))
        if entry is None or entry[0] is not payload:
            entry = (payload, {})
            self._events[id(payload)] = entry
            if len(self._events) > EVENTS_KEPT:
                self._events.popitem(last=False)
        results = entry[1]
        if key in results:
            return results[key]
        encoded = results[key] = self._shape(key, build).execute(convert(payload))
        return encoded

    def _shape(self, key: ShapeKey, build: Callable[[], Shape]) -> Shape:
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = build()
            if len(self._shapes) > SHAPES_KEPT:
                self._shapes.popitem(last=False)
        else:
            self._shapes.move_to_end(key)
        return shape


FANOUT = FanOut()


@dataclass(slots=True)
class LiveOperation:
    """One websocket operation, as its subscription resolver sees it."""

    schema: GraphQLSchema
    executor_class: type[Executor]
    query: str
    variables: Mapping[str, Any] | None
    operation_name: str | None
    frame_prefix: str  # the protocol's result frame up to its payload, with this operation's id
    send_text: Callable[[str], Awaitable[None]]
    is_open: Callable[[], bool]
    key: ShapeKey = field(init=False)

    def __post_init__(self) -> None:
        variables = orjson.dumps(self.variables or {}, option=orjson.OPT_SORT_KEYS)
        self.key = (id(self.schema), self.query, self.operation_name, variables)

    async def deliver(self, payload: object, convert: Callable[[Any], object]) -> bool:
        """Send the shared result of `payload`; False: the caller must yield it instead."""
        encoded = FANOUT.encoded(self.key, self._build, payload, convert)
        if encoded is None:
            return False
        if not self.is_open():
            return True  # completed by the client: nothing more is sent for it
        try:
            await self.send_text(f"{self.frame_prefix}{encoded}}}")
        except Exception:  # strawberry's own send path meets the same failure and handles it
            return False
        return True

    def _build(self) -> Shape:
        try:
            document: DocumentNode = parse(self.query)
            executor = self.executor_class.build(
                self.schema, document, raw_variable_values=dict(self.variables or {}), operation_name=self.operation_name
            )
        except Exception as exc:  # it ran through strawberry already; never fail a delivery here
            log.warning("live operation cannot be shared, delivering it alone: %r", exc)
            return Shape(None)
        return Shape(executor if isinstance(executor, Executor) else None)


LIVE_OPERATION: ContextVar[LiveOperation | None] = ContextVar("pulsegraph_live_operation", default=None)


def current_operation() -> LiveOperation | None:
    """The websocket operation whose task is running, if the transport set one."""
    return LIVE_OPERATION.get()


def _close_awaitable(result: object) -> None:
    """A selection with async resolvers cannot be shared synchronously: do not leak its coroutine."""
    close = getattr(result, "close", None)
    if callable(close) and not isinstance(result, ExecutionResult):
        close()
