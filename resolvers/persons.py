"""Persons: identify, the persons list and one person with its events (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.auth import Access
from app.errors import BadInput
from app.services.insights import persons as service
from resolvers.common import app_state, guarded, viewer_of
from resolvers.ingestion import ingest
from schema.persons import IdentifyResult, Person, PersonEvent, PersonEventPage, PersonPage

OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="The organization; required for platform admins, optional (yours) for org admins."),
]
FirstArg = Annotated[int | None, strawberry.argument(description="Page size, 1..200 (default 50).")]
AfterArg = Annotated[str | None, strawberry.argument(description="endCursor of the previous page.")]


def to_event(e: service.PersonEvent) -> PersonEvent:
    return PersonEvent(
        event_id=e.event_id, type=e.type, occurred_at=e.occurred_at, received_at=e.received_at, person_key=e.person_key,
        user_id=e.user_id, anonymous_id=e.anonymous_id, profile_id=strawberry.ID(str(e.profile_id)) if e.profile_id else None,
        session_id=e.session_id, url=e.url, properties=e.properties,
    )  # fmt: skip


def to_person(organization_id: Any, p: service.Person) -> Person:
    async def events(first: int | None, after: str | None) -> PersonEventPage:
        page = await service.person_events(organization_id, p, first=first, after=after)
        return PersonEventPage(events=[to_event(e) for e in page.events], end_cursor=page.end_cursor, has_next_page=page.has_next_page)

    return Person(
        id=strawberry.ID(p.id), user_id=p.user_id, anonymous_ids=p.anonymous_ids, properties=p.properties,
        first_seen_at=p.first_seen_at, last_seen_at=p.last_seen_at, loader=events,
    )  # fmt: skip


async def identify(
    info: Info,
    user_id: Annotated[str, strawberry.argument(description="Your id of the signed-in user.")],
    anonymous_id: Annotated[str, strawberry.argument(description="The device's anonymousId, as sent with its events.")],
    organization_id: Annotated[
        strawberry.ID | None, strawberry.argument(description="Optional: the credential's own organization.")
    ] = None,
    properties: Annotated[JSON | None, strawberry.argument(description="Person properties to set ($set).")] = None,
    set_once: Annotated[
        JSON | None, strawberry.argument(description="Person properties to set only where missing ($set_once).")
    ] = None,
) -> IdentifyResult:
    viewer = viewer_of(info)
    org = await service.identify_scope(viewer, organization_id)
    event = service.identify_event(user_id=user_id, anonymous_id=anonymous_id, properties=properties, set_once=set_once)
    outcome = await ingest(viewer=viewer, events=[event], state=app_state(info), client_ip=None, domain=False)
    if outcome.rejected:
        rejection = outcome.rejected[0]
        raise BadInput(rejection.reason, field=rejection.field)
    person, linked = await service.identify_outcome(org, anonymous_id, user_id)
    return IdentifyResult(person_id=strawberry.ID(person), linked=linked, event_id=outcome.event_ids[0] if outcome.event_ids else None)


async def persons(
    info: Info,
    organization_id: OrganizationArg = None,
    search: Annotated[
        str | None, strawberry.argument(description="Text in the person's key, its anonymous ids or its properties (e.g. an email).")
    ] = None,
    cohort_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this cohort's members.")] = None,
    first: FirstArg = 50,
    after: AfterArg = None,
) -> PersonPage:
    page = await service.list_persons(
        viewer=viewer_of(info), organization_id=organization_id, search=search, cohort=cohort_id, first=first, after=after
    )
    return PersonPage(
        persons=[to_person(page.organization_id, p) for p in page.persons], end_cursor=page.end_cursor, has_next_page=page.has_next_page
    )


async def person(
    info: Info,
    id: Annotated[strawberry.ID, strawberry.argument(description="Any of the person's keys: u:<userId>, a:<anonymousId>, ...")],
    organization_id: OrganizationArg = None,
) -> Person:
    found = await service.get_person(viewer=viewer_of(info), organization_id=organization_id, person_id=str(id))
    return to_person(found[0], found[1])


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The persons domain's reads, merged into the root by schema.root."""

    persons: PersonPage = guarded(
        Access.ORG_READERS, persons,
        "An organization's persons (every person seen in events, and every identified user) in key order, by cursor; "
        "search their ids and properties, or list one cohort's members.",
    )
    person: Person = guarded(
        Access.ORG_READERS, person,
        "One person: properties, first and last seen, ids and events (its linked anonymous ids' included).",
    )


@strawberry.type
class Mutation:
    """The persons domain's writes, merged into the root by schema.root."""

    identify: IdentifyResult = guarded(
        Access.INGESTERS, identify,
        "Link an anonymousId to a userId (the device's history becomes the user's in every insight, events before "
        "the link included; the first link of an anonymousId holds) and set person properties. Recorded as a "
        "user.identified event.",
    )
