"""Persons: who events are from, their properties, identity links and events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON


@strawberry.type(description="One event of a person, as stored.")
class PersonEvent:
    event_id: str = strawberry.field(description="The event's id.")
    type: str = strawberry.field(description="The event name.")
    occurred_at: datetime = strawberry.field(description="When it happened.")
    received_at: datetime = strawberry.field(description="When pulsegraph stored it.")
    person_key: str = strawberry.field(
        description="The key it was sent under: the person's own, or an anonymous key linked to it ('a:<anonymousId>')."
    )
    user_id: str | None = strawberry.field(description="The userId it carried.")
    anonymous_id: str | None = strawberry.field(description="The anonymousId it carried.")
    profile_id: strawberry.ID | None = strawberry.field(description="The profile it was about.")
    session_id: str | None = strawberry.field(description="Its session.")
    url: str | None = strawberry.field(description="The page URL it was sent from.")
    properties: JSON = strawberry.field(description="Its properties.")


@strawberry.type(description="A page of a person's events, latest first.")
class PersonEventPage:
    events: list[PersonEvent] = strawberry.field(description="The events of this page.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")
    has_next_page: bool = strawberry.field(description="Whether more events follow.")


EventsLoader = Callable[[int | None, str | None], Awaitable[PersonEventPage]]


@strawberry.type(
    description="A person: a signed-in user ('u:<userId>'), else an anonymous visitor ('a:<anonymousId>'), else a "
    "cookie-less daily visitor hash. Anonymous ids an identify linked to a user are that user."
)
class Person:
    id: strawberry.ID = strawberry.field(description="The person's key, e.g. u:alice or a:device-1.")
    user_id: str | None = strawberry.field(description="The userId, for an identified person.")
    anonymous_ids: list[str] = strawberry.field(
        description="The anonymousIds that are this person: linked by identifies (or its own, for an anonymous person)."
    )
    properties: JSON = strawberry.field(description="Person properties, from $set / $set_once and identify.")
    first_seen_at: datetime | None = strawberry.field(description="The earliest occurredAt of the person's events.")
    last_seen_at: datetime | None = strawberry.field(description="The latest occurredAt of the person's events.")
    loader: strawberry.Private[EventsLoader]

    @strawberry.field(description="The person's events (its linked anonymous ids' too), latest first.")
    async def events(
        self,
        first: Annotated[int | None, strawberry.argument(description="Page size, 1..200 (default 20).")] = 20,
        after: Annotated[str | None, strawberry.argument(description="endCursor of the previous page.")] = None,
    ) -> PersonEventPage:
        return await self.loader(first, after)


@strawberry.type(description="A page of persons, in the order of their keys.")
class PersonPage:
    persons: list[Person] = strawberry.field(description="The persons of this page.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")
    has_next_page: bool = strawberry.field(description="Whether more persons follow.")


@strawberry.type(description="What an identify did.")
class IdentifyResult:
    person_id: strawberry.ID = strawberry.field(description="The person the anonymous id counts as from now on: u:<userId>.")
    linked: bool = strawberry.field(
        description="True when the anonymous id is this user's (now or by an earlier identify); false when an earlier "
        "identify linked it to another user (the first link holds)."
    )
    event_id: str | None = strawberry.field(description="The user.identified event recorded (null: a Do-Not-Track drop).")
