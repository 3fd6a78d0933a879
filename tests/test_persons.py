"""Persons through the public API: identify (mutation and user.identified events) links an
anonymous history to a user retroactively, person properties follow event order whatever the
arrival order, listing and search page by cursor, a person's events include its linked
anonymous ids', and data-subject deletion removes the person and its links."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from app.services.insights import grammar
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.product_events import ProductEvent, ordered, send

IDENTIFY = """mutation($user: String!, $anon: String!, $org: ID, $props: JSON, $once: JSON) {
  identify(userId: $user, anonymousId: $anon, organizationId: $org, properties: $props, setOnce: $once) {
    personId linked eventId } }"""
PERSON = """query($id: ID!, $first: Int, $after: String) {
  person(id: $id) { id userId anonymousIds properties firstSeenAt lastSeenAt
    events(first: $first, after: $after) { events { eventId type personKey occurredAt } endCursor hasNextPage } } }"""
PERSONS = """query($search: String, $cohort: ID, $first: Int, $after: String) {
  persons(search: $search, cohortId: $cohort, first: $first, after: $after) {
    persons { id userId anonymousIds properties firstSeenAt lastSeenAt } endCursor hasNextPage } }"""
PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
TRACK = """mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field reason } } }"""
DELETE = """mutation($user: String, $anon: String) {
  deleteSubjectData(userId: $user, anonymousId: $anon) { events persons } }"""

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def at(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def ev(type_: str, minutes: float, *, user: str | None = None, anon: str | None = None, batch: int = 0, **props: Any) -> ProductEvent:
    return ProductEvent(f"e-{uuid.uuid4().hex[:12]}", type_, at(minutes), user_id=user, anonymous_id=anon, properties=props, batch=batch)


async def person_counts(org_id: str) -> dict[str, int]:
    """Events per person as every insight reads them (Sql.person() over Sql.events_from())."""
    sql = grammar.Sql()
    org = sql.param(uuid.UUID(org_id), "uuid")
    statement = f"SELECT {sql.person()} AS person, count(*) AS n FROM {sql.events_from()} WHERE e.organization_id = {org} GROUP BY 1"
    async with connection() as conn:
        rows = await conn.fetch(statement, *sql.params)
    return {r["person"]: r["n"] for r in rows}


async def all_pages(client: Any, token: str, size: int, **variables: Any) -> list[dict[str, Any]]:
    found, after = [], None
    while True:
        page = (await gql_data(client, PERSONS, {"first": size, "after": after, **variables}, token))["persons"]
        assert len(page["persons"]) <= size
        found += page["persons"]
        if not page["hasNextPage"]:
            return found
        after = page["endCursor"]


async def test_identify_moves_the_anonymous_history_to_the_user_retroactively(client, tenant):
    before = [ev("page.viewed", 30 - n, anon="dev-1") for n in range(3)] + [ev("signup", 20, user="alice")]
    await send(client, tenant.ingestion_key, before)
    assert await person_counts(tenant.org_id) == {"a:dev-1": 3, "u:alice": 1}

    done = (await gql_data(client, IDENTIFY, {"user": "alice", "anon": "dev-1", "props": {"email": "alice@example.com"}},
                           tenant.ingestion_key))["identify"]  # fmt: skip
    assert done["personId"] == "u:alice" and done["linked"] is True and done["eventId"]
    # Events received before the link count for alice now, and so does the identify itself.
    assert await person_counts(tenant.org_id) == {"u:alice": 5}

    # The first link holds: a second identify of dev-1 as bob changes nothing.
    again = (await gql_data(client, IDENTIFY, {"user": "bob", "anon": "dev-1"}, tenant.service_token))["identify"]
    assert again == {"personId": "u:bob", "linked": False, "eventId": again["eventId"]}
    await send(client, tenant.ingestion_key, [ev("page.viewed", 1, anon="dev-1")])
    assert await person_counts(tenant.org_id) == {"u:alice": 6, "u:bob": 1}

    person = (await gql_data(client, PERSON, {"id": "a:dev-1", "first": 50}, tenant.org_admin_token))["person"]
    assert person["id"] == "u:alice" and person["userId"] == "alice" and person["anonymousIds"] == ["dev-1"]
    assert person["properties"] == {"email": "alice@example.com"}
    keys = [e["personKey"] for e in person["events"]["events"]]
    assert sorted(keys) == ["a:dev-1"] * 4 + ["u:alice"] * 2
    times = [e["occurredAt"] for e in person["events"]["events"]]
    assert times == sorted(times, reverse=True)
    assert person["firstSeenAt"] == at(30).isoformat() and person["lastSeenAt"] >= at(1).isoformat()


async def test_user_identified_events_link_tracked_or_published(client, tenant):
    await send(client, tenant.ingestion_key, [ev("page.viewed", 10, anon="dev-t"), ev("page.viewed", 10, anon="dev-p")])
    tracked = await gql_data(client, TRACK, {"e": [{"type": "user.identified", "userId": "tina", "anonymousId": "dev-t"}]},
                             tenant.ingestion_key)  # fmt: skip
    assert tracked["trackEvents"]["accepted"] == 1
    published = await gql_data(client, PUBLISH, {"e": [{"eventId": "idf-1", "type": "USER_IDENTIFIED", "userId": "pia",
                                                        "anonymousId": "dev-p", "properties": {"$set": {"plan": "pro"}}}]},
                               tenant.service_token)  # fmt: skip
    assert published["publishDomainEvents"]["accepted"] == 1
    assert await person_counts(tenant.org_id) == {"u:tina": 2, "u:pia": 2}
    pia = (await gql_data(client, PERSON, {"id": "u:pia"}, tenant.org_admin_token))["person"]
    assert pia["properties"] == {"plan": "pro"} and pia["anonymousIds"] == ["dev-p"]

    # An identify needs both ids; $set must be an object.
    bad = await gql_data(client, TRACK, {"e": [{"type": "user.identified", "userId": "x"},
                                               {"type": "x", "userId": "x", "properties": {"$set": 3}}]},
                         tenant.ingestion_key)  # fmt: skip
    assert bad["trackEvents"]["rejected"] == [
        {"index": 0, "field": "anonymousId", "reason": "user.identified links an anonymousId to a userId: send both"},
        {"index": 1, "field": "properties.$set", "reason": "properties.$set must be an object of person properties"},
    ]


async def test_identify_access_and_input(client, tenant, other_tenant):
    variables = {"user": "u1", "anon": "d1"}
    assert error_codes(await gql(client, IDENTIFY, variables, token=tenant.provider_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, IDENTIFY, variables, token=tenant.admin_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, IDENTIFY, variables)) == ["UNAUTHENTICATED"]
    foreign = await gql(client, IDENTIFY, {**variables, "org": other_tenant.org_id}, token=tenant.ingestion_key)
    assert error_codes(foreign) == ["NOT_FOUND"] and foreign["errors"][0]["extensions"]["field"] == "organizationId"
    own = await gql(client, IDENTIFY, {**variables, "org": tenant.org_id}, token=tenant.org_admin_token)
    assert own["data"]["identify"]["linked"] is True
    bad = await gql(client, IDENTIFY, {**variables, "props": [1, 2]}, token=tenant.ingestion_key)
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "properties"
    long_id = await gql(client, IDENTIFY, {"user": "u" * 300, "anon": "d2"}, token=tenant.ingestion_key)
    assert error_codes(long_id) == ["BAD_USER_INPUT"] and long_id["errors"][0]["extensions"]["field"] == "userId"
    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM person_aliases WHERE organization_id = $1", other_tenant.organization.id) == 0
    # Reads are for organization admins only; another tenant's person is not found.
    assert error_codes(await gql(client, PERSON, {"id": "u:u1"}, token=tenant.provider_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, PERSON, {"id": "u:u1"}, token=other_tenant.org_admin_token)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, PERSONS, {}, token=tenant.ingestion_key)) == ["FORBIDDEN"]


def expected_properties(events: list[ProductEvent], person: str, links: dict[str, str]) -> dict[str, Any]:
    """The reference: apply every $set / $set_once in event order (set-once before set within an event)."""
    values: dict[str, Any] = {}
    for e in ordered([e for e in events if e.key(links) == person]):
        for key, value in e.properties.get("$set_once", {}).items():
            values.setdefault(key, value)
        values.update(e.properties.get("$set", {}))
    return values


async def test_set_and_set_once_follow_event_order_whatever_the_arrival(client, tenant):
    rng = random.Random(7)
    events = []
    for n in range(60):
        person = rng.choice([{"user": "carla"}, {"anon": "dev-c"}, {"user": "dan"}])
        props: dict[str, Any] = {}
        for op in ("$set", "$set_once"):
            if rng.random() < 0.6:
                props[op] = {key: f"{key}-{n}" for key in rng.sample(["plan", "city", "email", "lang"], rng.randint(1, 3))}
        # Arrival order differs from event order: later batches carry earlier events too.
        events.append(ev("page.viewed", rng.uniform(1, 600), batch=rng.randint(0, 5), **person, **props))
    link = ev("user.identified", 300, user="carla", anon="dev-c", batch=3)
    events.append(link)
    await send(client, tenant.ingestion_key, events)
    links = {"a:dev-c": "u:carla"}
    for person in ("u:carla", "u:dan"):
        found = (await gql_data(client, PERSON, {"id": person}, tenant.org_admin_token))["person"]
        assert found["properties"] == expected_properties(events, person, links), person


async def test_a_late_event_does_not_overwrite_a_newer_value(client, tenant):
    await send(client, tenant.ingestion_key, [ev("x", 10, user="eve", **{"$set": {"plan": "pro"}, "$set_once": {"src": "ad"}})])
    await send(client, tenant.ingestion_key, [ev("x", 20, user="eve", **{"$set": {"plan": "free"}, "$set_once": {"src": "seo"}})])
    eve = (await gql_data(client, PERSON, {"id": "u:eve"}, tenant.org_admin_token))["person"]
    assert eve["properties"] == {"plan": "pro", "src": "seo"}  # the newer set, the earlier set-once
    await send(client, tenant.ingestion_key, [ev("x", 5, user="eve", **{"$set_once": {"plan": "trial", "lang": "de"}})])
    eve = (await gql_data(client, PERSON, {"id": "u:eve"}, tenant.org_admin_token))["person"]
    assert eve["properties"] == {"plan": "pro", "src": "seo", "lang": "de"}


async def test_persons_list_pages_and_searches(client, tenant):
    events = [ev("page.viewed", 50 - n, user=f"user-{n:02d}", **({"$set": {"email": f"p{n}@corp.example"}} if n % 3 == 0 else {}))
              for n in range(11)]  # fmt: skip
    events += [ev("page.viewed", 5, anon=f"anon-{n}") for n in range(4)]
    await send(client, tenant.ingestion_key, events)
    await gql_data(client, IDENTIFY, {"user": "user-01", "anon": "anon-0"}, tenant.ingestion_key)
    expected = sorted([f"u:user-{n:02d}" for n in range(11)] + [f"a:anon-{n}" for n in range(1, 4)])
    for size in (1, 4, 200):
        listed = await all_pages(client, tenant.org_admin_token, size)
        assert [p["id"] for p in listed] == expected, size
    by_email = await all_pages(client, tenant.org_admin_token, 2, search="CORP.example")
    assert [p["id"] for p in by_email] == ["u:user-00", "u:user-03", "u:user-06", "u:user-09"]
    by_anonymous = await all_pages(client, tenant.org_admin_token, 2, search="anon-0")
    assert [(p["id"], p["anonymousIds"]) for p in by_anonymous] == [("u:user-01", ["anon-0"])]
    assert await all_pages(client, tenant.org_admin_token, 5, search="100%_") == []
    bad = await gql(client, PERSONS, {"first": 0}, token=tenant.org_admin_token)
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "first"
    bad = await gql(client, PERSONS, {"after": "nonsense"}, token=tenant.org_admin_token)
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "after"


async def test_person_events_page_latest_first_including_linked_ids(client, tenant):
    events = [ev("a.thing", 100 - n, anon="dev-q") for n in range(7)] + [ev("u.thing", 50 - n, user="quinn") for n in range(5)]
    await send(client, tenant.ingestion_key, events)
    await gql_data(client, IDENTIFY, {"user": "quinn", "anon": "dev-q"}, tenant.ingestion_key)
    seen, after = [], None
    while True:
        page = (await gql_data(client, PERSON, {"id": "u:quinn", "first": 5, "after": after}, tenant.org_admin_token))["person"]
        seen += page["events"]["events"]
        if not page["events"]["hasNextPage"]:
            break
        after = page["events"]["endCursor"]
    mine = {e.event_id for e in events}
    assert len(seen) == 13 and {e["eventId"] for e in seen} >= mine
    assert [e["occurredAt"] for e in seen] == sorted((e["occurredAt"] for e in seen), reverse=True)


async def test_deleting_a_subject_removes_the_person_and_its_links(client, tenant):
    await send(client, tenant.ingestion_key, [ev("x", 30, anon="dev-z"), ev("x", 20, user="zoe"), ev("x", 10, user="yan")])
    await gql_data(client, IDENTIFY, {"user": "zoe", "anon": "dev-z", "props": {"email": "zoe@example.com"}}, tenant.ingestion_key)
    done = (await gql_data(client, DELETE, {"user": "zoe"}, tenant.org_admin_token))["deleteSubjectData"]
    assert done == {"events": 3, "persons": 2}  # zoe's two events and the anonymous one linked to her; u:zoe and a:dev-z
    assert await person_counts(tenant.org_id) == {"u:yan": 1}
    async with connection() as conn:
        org = uuid.UUID(tenant.org_id)
        assert await conn.fetchval("SELECT count(*) FROM person_aliases WHERE organization_id = $1", org) == 0
        assert [r["id"] for r in await conn.fetch("SELECT id FROM persons WHERE organization_id = $1", org)] == ["u:yan"]
    assert error_codes(await gql(client, PERSON, {"id": "u:zoe"}, token=tenant.org_admin_token)) == ["NOT_FOUND"]


async def test_concurrent_batches_keep_event_order(client, tenant):
    """Batches for the same persons stored at once (row locks, an identify among them): the
    properties are still those of event order, and no batch fails."""
    import asyncio

    rng = random.Random(11)
    events = [
        ev("x", rng.uniform(1, 300), batch=n % 6, **rng.choice([{"user": "gina"}, {"anon": "dev-g"}]),
           **{"$set": {"plan": f"plan-{n}"}, "$set_once": {"first": f"first-{n}"}})
        for n in range(120)
    ]  # fmt: skip
    events.append(ev("user.identified", 150, user="gina", anon="dev-g", batch=2))
    groups: dict[int, list[ProductEvent]] = {}
    for e in events:
        groups.setdefault(e.batch, []).append(e)
    await asyncio.gather(*(send(client, tenant.ingestion_key, group) for group in groups.values()))
    gina = (await gql_data(client, PERSON, {"id": "u:gina"}, tenant.org_admin_token))["person"]
    by_time = sorted(events, key=lambda e: e.occurred_at)  # arrival order cannot matter: no two events share a time
    assert gina["properties"] == {
        "plan": next(e for e in reversed(by_time) if "$set" in e.properties).properties["$set"]["plan"],
        "first": next(e for e in by_time if "$set_once" in e.properties).properties["$set_once"]["first"],
    }
    assert gina["anonymousIds"] == ["dev-g"]
