"""Shared live results (app/fanout.py), in process: one execution per (event, operation
shape), never one shape's result for another, and each protocol's own frame and id.

End-to-end checks over real sockets are in tests/test_live.py."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from app.fanout import LiveOperation
from resolvers.live import to_profile_view
from schema import build_schema

SCHEMA = build_schema()

VIEWS = "subscription V($p: ID!) { profileViews(profileId: $p) { eventId country browser isGov } }"
ALIASED = "subscription A($p: ID!) { seen: profileViews(profileId: $p) { id: eventId where: country } }"
OPTIONAL = "subscription O($p: ID!, $c: Boolean!) { profileViews(profileId: $p) { eventId country @include(if: $c) } }"
TRANSPORT_WS = '{"id":{id},"type":"next","payload":'
LEGACY_WS = '{"type":"data","id":{id},"payload":'


class Socket:
    """The frames one websocket was sent."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.open = True

    async def send_text(self, text: str) -> None:
        self.frames.append(orjson.loads(text))


def operation(socket: Socket, op_id: str, query: str, variables: dict[str, Any], frame: str = TRANSPORT_WS) -> LiveOperation:
    return LiveOperation(
        schema=SCHEMA._schema,
        executor_class=SCHEMA.execution_context_class,
        query=query,
        variables=variables,
        operation_name=None,
        frame_prefix=frame.replace("{id}", orjson.dumps(op_id).decode()),
        send_text=socket.send_text,
        is_open=lambda: socket.open,
    )


def payload(profile_id: str, **overrides: Any) -> dict[str, Any]:
    event = {"eventId": f"e-{uuid.uuid4().hex}", "profileId": profile_id, "occurredAt": "2026-11-22T10:00:00+00:00",
             "country": "DE", "browser": "Firefox", "isGov": False}  # fmt: skip
    return event | overrides


class Counting:
    """`to_profile_view` that counts its calls: one per shape per event when sharing works."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: Mapping[str, Any]) -> Any:
        self.calls += 1
        return to_profile_view(event)


async def test_one_execution_per_shape_shared_by_every_subscriber() -> None:
    profile = str(uuid.uuid4())
    sockets = [Socket() for _ in range(50)]
    ops = [operation(s, "1", VIEWS, {"p": profile}) for s in sockets]
    event, convert = payload(profile), Counting()
    for op in ops:
        assert await op.deliver(event, convert)
    assert convert.calls == 1
    expected = {"id": "1", "type": "next", "payload": {"data": {"profileViews": {
        "eventId": event["eventId"], "country": "DE", "browser": "Firefox", "isGov": False}}}}  # fmt: skip
    assert all(s.frames == [expected] for s in sockets)


async def test_different_documents_and_aliases_on_one_event_get_their_own_results() -> None:
    profile = str(uuid.uuid4())
    plain, aliased = Socket(), Socket()
    event, convert = payload(profile), Counting()
    for _ in range(2):  # the second round reads the cached results: still not mixed up
        assert await operation(plain, "a", VIEWS, {"p": profile}).deliver(event, convert)
        assert await operation(aliased, "a", ALIASED, {"p": profile}).deliver(event, convert)
    assert convert.calls == 2
    assert plain.frames[0]["payload"]["data"] == {"profileViews": {
        "eventId": event["eventId"], "country": "DE", "browser": "Firefox", "isGov": False}}  # fmt: skip
    assert aliased.frames[0]["payload"]["data"] == {"seen": {"id": event["eventId"], "where": "DE"}}
    assert plain.frames[0] == plain.frames[1] and aliased.frames[0] == aliased.frames[1]


async def test_variables_are_part_of_the_shape() -> None:
    profile = str(uuid.uuid4())
    with_country, without = Socket(), Socket()
    event = payload(profile)
    assert await operation(with_country, "x", OPTIONAL, {"p": profile, "c": True}).deliver(event, to_profile_view)
    assert await operation(without, "x", OPTIONAL, {"c": False, "p": profile}).deliver(event, to_profile_view)
    assert with_country.frames[0]["payload"]["data"]["profileViews"] == {"eventId": event["eventId"], "country": "DE"}
    assert without.frames[0]["payload"]["data"]["profileViews"] == {"eventId": event["eventId"]}


async def test_each_protocol_gets_its_own_frame_and_operation_id() -> None:
    profile = str(uuid.uuid4())
    modern, legacy = Socket(), Socket()
    event = payload(profile)
    assert await operation(modern, "views-1", VIEWS, {"p": profile}, TRANSPORT_WS).deliver(event, to_profile_view)
    assert await operation(legacy, 'odd "id"', VIEWS, {"p": profile}, LEGACY_WS).deliver(event, to_profile_view)
    assert modern.frames[0]["type"] == "next" and modern.frames[0]["id"] == "views-1"
    assert legacy.frames[0]["type"] == "data" and legacy.frames[0]["id"] == 'odd "id"'
    assert modern.frames[0]["payload"] == legacy.frames[0]["payload"]


async def test_an_event_with_errors_is_not_shared_but_left_to_the_per_subscriber_path() -> None:
    """A null for a non-null field: strawberry's own path must mask and report it."""
    profile = str(uuid.uuid4())
    socket = Socket()
    event = payload(profile, eventId=None)
    assert not await operation(socket, "1", VIEWS, {"p": profile}).deliver(event, to_profile_view)
    assert socket.frames == []


async def test_a_completed_operation_is_sent_nothing() -> None:
    profile = str(uuid.uuid4())
    socket = Socket()
    socket.open = False
    assert await operation(socket, "1", VIEWS, {"p": profile}).deliver(payload(profile), to_profile_view)
    assert socket.frames == []


async def test_a_failed_send_is_left_to_the_per_subscriber_path() -> None:
    profile = str(uuid.uuid4())

    async def broken(text: str) -> None:
        raise RuntimeError("socket gone")

    op = operation(Socket(), "1", VIEWS, {"p": profile})
    op.send_text = broken
    assert not await op.deliver(payload(profile), to_profile_view)


@pytest.mark.parametrize("query", [VIEWS, ALIASED])
async def test_equal_payloads_that_are_different_objects_are_executed_each(query: str) -> None:
    """Sharing is by the bus's decoded object, never by content that merely looks alike."""
    profile = str(uuid.uuid4())
    convert = Counting()
    first = payload(profile)
    second = dict(first)
    for event in (first, second):
        assert await operation(Socket(), "1", query, {"p": profile}).deliver(event, convert)
    assert convert.calls == 2
