"""Cohorts through the public API: each kind's members equal a plain-Python computation over
the same events, the scheduler recomputes them, members page and download as CSV, insights
filter on them, bad definitions name their field, and only the organization's admins reach them."""

from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio

from app.database import connection
from app.services.insights import grammar
from app.services.insights.query import fetch
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.product_events import ProductEvent, ordered, send

CREATE = """mutation($name: String!, $d: CohortDefinitionInput!, $org: ID) {
  createCohort(name: $name, definition: $d, organizationId: $org) { id name kind definition memberCount computedAt membersCsvUrl } }"""
UPDATE = """mutation($id: ID!, $name: String, $d: CohortDefinitionInput) {
  updateCohort(id: $id, name: $name, definition: $d) { id name kind memberCount computedAt } }"""
DELETE = "mutation($id: ID!, $org: ID) { deleteCohort(id: $id, organizationId: $org) }"
COHORT = "query($id: ID!, $org: ID) { cohort(id: $id, organizationId: $org) { id name memberCount computedAt } }"
COHORTS = "query { cohorts { id name kind } }"
MEMBERS = """query($cohort: ID, $first: Int, $after: String) {
  persons(cohortId: $cohort, first: $first, after: $after) { persons { id } endCursor hasNextPage } }"""
IDENTIFY = """mutation($user: String!, $anon: String!) { identify(userId: $user, anonymousId: $anon) { linked } }"""
DELETE_SUBJECT = "mutation($user: String) { deleteSubjectData(userId: $user) { persons } }"

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
LINKS = {"a:anon-0": "u:p0", "a:anon-1": "u:p1"}


def make_events(seed: int = 3) -> list[ProductEvent]:
    """Ten users and five anonymous devices (two linked to users) over 20 days: purchases
    with amounts, page views, and $set of plan and email."""
    rng = random.Random(seed)
    who = [{"user_id": f"p{n}"} for n in range(10)] + [{"anonymous_id": f"anon-{n}"} for n in range(5)]
    events = []
    for n in range(400):
        person = rng.choice(who)
        kind = rng.choice(["purchase", "page.viewed", "page.viewed"])
        props: dict[str, Any] = {"amount": rng.randint(1, 30)} if kind == "purchase" else {}
        if rng.random() < 0.15:
            props["$set"] = {"plan": rng.choice(["pro", "free"]), "email": f"{next(iter(person.values()))}@ex.example"}
        at = NOW - timedelta(days=rng.uniform(0, 20))
        events.append(ProductEvent(f"c{seed}-{n}", kind, at, properties=props, **person))
    return events


def persons_of(events: list[ProductEvent]) -> set[str]:
    return {e.key(LINKS) for e in events}


def did(events: list[ProductEvent], *, now: datetime, days: int, min_count: int, minimum_amount: int) -> set[str]:
    """Who made at least `min_count` purchases over `minimum_amount` in the `days` before `now`
    (the instant the cohort was computed: the server counts back from its own clock)."""
    counts: dict[str, int] = {}
    for e in events:
        if e.type == "purchase" and now - timedelta(days=days) <= e.occurred_at < now and e.properties["amount"] > minimum_amount:
            counts[e.key(LINKS)] = counts.get(e.key(LINKS), 0) + 1
    return {p for p, n in counts.items() if n >= min_count}


def computed_at(cohort: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(cohort["computedAt"])


def plans(events: list[ProductEvent]) -> dict[str, Any]:
    values: dict[str, dict[str, Any]] = {}
    for e in ordered(events):
        values.setdefault(e.key(LINKS), {}).update(e.properties.get("$set", {}))
    return {p: v.get("plan") for p, v in values.items()}


def first_seen(events: list[ProductEvent]) -> dict[str, datetime]:
    seen: dict[str, datetime] = {}
    for e in events:
        key = e.key(LINKS)
        seen[key] = min(seen.get(key, e.occurred_at), e.occurred_at)
    return seen


@pytest_asyncio.fixture
async def loaded(client, tenant):
    events = make_events()
    await send(client, tenant.ingestion_key, events)
    for anon, user in LINKS.items():
        await gql_data(client, IDENTIFY, {"user": user[2:], "anon": anon[2:]}, tenant.ingestion_key)
    # The identifies are events of their users too (now): part of the reference.
    events += [ProductEvent(f"idf-{user}", "user.identified", datetime.now(UTC), user_id=user[2:]) for user in LINKS.values()]
    return tenant, events


async def create(client: Any, token: str, definition: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return (await gql_data(client, CREATE, {"name": name, "d": definition}, token))["createCohort"]


async def members(client: Any, token: str, cohort: str, size: int = 4) -> list[str]:
    found, after = [], None
    while True:
        page = (await gql_data(client, MEMBERS, {"cohort": cohort, "first": size, "after": after}, token))["persons"]
        found += [p["id"] for p in page["persons"]]
        if not page["hasNextPage"]:
            return found
        after = page["endCursor"]


BEHAVIORAL = {"kind": "BEHAVIORAL", "event": {"event": "purchase", "filters": [{"key": "amount", "operator": "GREATER_THAN", "value": 10}]},
              "minCount": 3, "days": 7}  # fmt: skip


async def test_each_kind_matches_a_plain_computation(client, loaded):
    tenant, events = loaded
    token = tenant.org_admin_token
    made = await create(client, token, BEHAVIORAL, "buyers")
    expected_did = did(events, now=computed_at(made), days=7, min_count=3, minimum_amount=10)
    assert expected_did and expected_did != persons_of(events)  # the data makes a real split
    assert made["kind"] == "BEHAVIORAL" and made["memberCount"] == len(expected_did) and made["computedAt"]
    assert made["definition"]["minCount"] == 3 and made["definition"]["event"]["event"] == "purchase"
    assert await members(client, token, made["id"]) == sorted(expected_did)

    not_did = await create(client, token, {**BEHAVIORAL, "performed": False}, "not buyers")
    not_buyers = persons_of(events) - did(events, now=computed_at(not_did), days=7, min_count=3, minimum_amount=10)
    assert await members(client, token, not_did["id"]) == sorted(not_buyers)

    pro = await create(client, token, {"kind": "PERSON_PROPERTY", "filters": [{"source": "PERSON", "key": "plan", "value": "pro"}]})
    assert await members(client, token, pro["id"]) == sorted(p for p, plan in plans(events).items() if plan == "pro")

    start, end = NOW - timedelta(days=19), NOW - timedelta(days=18, hours=12)
    rng = {"from": start.isoformat(), "to": end.isoformat()}
    new = await create(client, token, {"kind": "FIRST_SEEN", "range": rng})
    assert await members(client, token, new["id"]) == sorted(p for p, t in first_seen(events).items() if start <= t < end)

    listed = await create(client, token, {"kind": "STATIC", "personIds": ["u:p3", "a:anon-1", "u:nobody-yet", "u:p3"]})
    assert await members(client, token, listed["id"]) == ["u:nobody-yet", "u:p1", "u:p3"]
    assert listed["memberCount"] == 3

    names = [c["name"] for c in (await gql_data(client, COHORTS, {}, token))["cohorts"]]
    assert names == sorted(names) and len(names) == 5


async def test_insights_filter_on_membership(client, loaded):
    """A trends-like statement through the grammar: members' purchases, and everyone else's."""
    tenant, events = loaded
    cohort = await create(client, tenant.org_admin_token, BEHAVIORAL)
    member_set = did(events, now=computed_at(cohort), days=7, min_count=3, minimum_amount=10)
    for operator, expected in ((grammar.FilterOperator.IS_SET, True), (grammar.FilterOperator.IS_NOT_SET, False)):
        sql = grammar.Sql()
        condition = grammar.filter_condition(
            sql, grammar.property_filter(source=grammar.PropertySource.COHORT, key=cohort["id"], operator=operator, value=None, field="f")
        )
        org = sql.param(uuid.UUID(tenant.org_id), "uuid")
        statement = (f"SELECT count(*) AS n FROM {sql.events_from()} WHERE e.organization_id = {org} AND e.type = 'purchase'"
                     f" AND {condition}")  # fmt: skip
        (row,) = await fetch(sql, statement)
        assert row["n"] == sum(1 for e in events if e.type == "purchase" and (e.key(LINKS) in member_set) is expected)


async def test_the_scheduler_recomputes_after_new_events(client, loaded, settings):
    from workers.scheduler import run_jobs_once

    tenant, events = loaded
    cohort = await create(client, tenant.org_admin_token, {**BEHAVIORAL, "minCount": 1, "days": 1})
    before = did(events, now=computed_at(cohort), days=1, min_count=1, minimum_amount=10)
    assert await members(client, tenant.org_admin_token, cohort["id"]) == sorted(before)
    newcomer = ProductEvent("late-buyer", "purchase", datetime.now(UTC), user_id="newcomer", properties={"amount": 25})
    await send(client, tenant.ingestion_key, [newcomer])
    assert "u:newcomer" not in await members(client, tenant.org_admin_token, cohort["id"])  # until the next computation
    report = await run_jobs_once(settings)
    assert report.ran and report.results["cohorts"] >= 1
    found = (await gql_data(client, COHORT, {"id": cohort["id"]}, tenant.org_admin_token))["cohort"]
    assert computed_at(found) > computed_at(cohort)
    after = did([*events, newcomer], now=computed_at(found), days=1, min_count=1, minimum_amount=10)
    assert "u:newcomer" in after
    assert await members(client, tenant.org_admin_token, cohort["id"]) == sorted(after)
    assert found["memberCount"] == len(after)


async def test_update_and_delete(client, loaded):
    tenant, events = loaded
    token = tenant.org_admin_token
    cohort = await create(client, token, {"kind": "STATIC", "personIds": ["u:p1"]})
    renamed = (await gql_data(client, UPDATE, {"id": cohort["id"], "name": "renamed"}, token))["updateCohort"]
    assert renamed["name"] == "renamed" and renamed["memberCount"] == 1
    redefined = (await gql_data(client, UPDATE, {"id": cohort["id"], "d": BEHAVIORAL}, token))["updateCohort"]
    expected = did(events, now=computed_at(redefined), days=7, min_count=3, minimum_amount=10)
    assert redefined["kind"] == "BEHAVIORAL" and redefined["memberCount"] == len(expected)
    assert (await gql_data(client, DELETE, {"id": cohort["id"]}, token))["deleteCohort"] == cohort["id"]
    assert error_codes(await gql(client, COHORT, {"id": cohort["id"]}, token=token)) == ["NOT_FOUND"]
    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cohort_members WHERE cohort_id = $1", uuid.UUID(cohort["id"])) == 0


async def test_members_download_as_csv_for_admins_only(client, loaded, other_tenant):
    tenant, events = loaded
    cohort = await create(client, tenant.org_admin_token, {"kind": "STATIC", "personIds": ["u:p2", "a:anon-0", "u:ghost"]})
    url = cohort["membersCsvUrl"]
    response = await client.get(url, headers={"Authorization": f"Bearer {tenant.org_admin_token}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["person_id", "user_id", "anonymous_ids", "first_seen_at", "last_seen_at", "properties"]
    by_id = {r[0]: r for r in rows[1:]}
    assert sorted(by_id) == ["u:ghost", "u:p0", "u:p2"]
    assert by_id["u:p0"][1] == "p0" and by_id["u:p0"][2] == "anon-0"
    seen = first_seen(events)
    assert datetime.fromisoformat(by_id["u:p2"][3]) == seen["u:p2"]
    assert by_id["u:ghost"][3:] == ["", "", "{}"]

    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers={"Authorization": f"Bearer {tenant.provider_token}"})).status_code == 403
    assert (await client.get(url, headers={"Authorization": f"Bearer {tenant.ingestion_key}"})).status_code == 403
    foreign = await client.get(url, headers={"Authorization": f"Bearer {other_tenant.org_admin_token}"})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "NOT_FOUND"
    bare = url.split("?")[0]
    assert (await client.get(bare, headers={"Authorization": f"Bearer {other_tenant.org_admin_token}"})).status_code == 404
    assert (await client.get(bare, headers={"Authorization": f"Bearer {tenant.admin_token}"})).status_code == 400  # names no organization
    by_platform = await client.get(url, headers={"Authorization": f"Bearer {tenant.admin_token}"})
    assert by_platform.status_code == 200 and by_platform.text == response.text


async def test_bad_definitions_name_their_field(client, tenant):
    token = tenant.org_admin_token
    cases = [
        ({"kind": "BEHAVIORAL", "event": {"event": "x"}, "days": 3, "personIds": ["u:a"]}, "definition.personIds"),
        ({"kind": "STATIC", "personIds": ["u:a"], "days": 3}, "definition.days"),
        ({"kind": "BEHAVIORAL", "event": {"event": "x"}, "days": 3, "minCount": 0}, "definition.minCount"),
        ({"kind": "BEHAVIORAL", "event": {"event": "x"}, "days": 0}, "definition.days"),
        ({"kind": "BEHAVIORAL", "event": {"event": "x"}, "days": 366}, "definition.days"),
        ({"kind": "BEHAVIORAL", "event": {"event": "x"}}, "definition.days"),
        ({"kind": "BEHAVIORAL", "days": 3}, "definition.event"),
        ({"kind": "BEHAVIORAL", "event": {"event": " "}, "days": 3}, "definition.event.event"),
        ({"kind": "BEHAVIORAL", "event": {"event": "x", "filters": [{"key": "a", "operator": "REGEX", "value": "("}]}, "days": 3},
         "definition.event.filters[0].value"),
        ({"kind": "BEHAVIORAL", "event": {"event": "x", "filters": [{"key": "a", "operator": "GREATER_THAN", "value": "many"}]},
          "days": 3}, "definition.event.filters[0].value"),
        ({"kind": "PERSON_PROPERTY", "filters": [{"source": "EVENT", "key": "plan", "value": "pro"}]}, "definition.filters[0].source"),
        ({"kind": "PERSON_PROPERTY", "filters": [{"source": "PERSON", "key": "", "value": "pro"}]}, "definition.filters[0].key"),
        ({"kind": "PERSON_PROPERTY", "filters": []}, "definition.filters"),
        ({"kind": "FIRST_SEEN", "range": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}, "definition.range.to"),
        ({"kind": "FIRST_SEEN"}, "definition.range"),
        ({"kind": "STATIC", "personIds": []}, "definition.personIds"),
        ({"kind": "STATIC", "personIds": ["u:a", "x" * 301]}, "definition.personIds[1]"),
    ]  # fmt: skip
    for definition, field in cases:
        body = await gql(client, CREATE, {"name": "bad", "d": definition}, token=token)
        assert error_codes(body) == ["BAD_USER_INPUT"], (definition, body)
        assert body["errors"][0]["extensions"]["field"] == field, (definition, body)
    body = await gql(client, CREATE, {"name": " ", "d": {"kind": "STATIC", "personIds": ["u:a"]}}, token=token)
    assert body["errors"][0]["extensions"]["field"] == "name"
    assert (await gql_data(client, COHORTS, {}, token))["cohorts"] == []


async def test_access_and_tenancy(client, tenant, other_tenant):
    definition = {"kind": "STATIC", "personIds": ["u:a"]}
    cohort = await create(client, tenant.org_admin_token, definition)
    assert error_codes(await gql(client, CREATE, {"name": "x", "d": definition}, token=tenant.provider_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, CREATE, {"name": "x", "d": {"kind": "STATIC"}}, token=tenant.service_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, COHORT, {"id": cohort["id"]}, token=tenant.ingestion_key)) == ["FORBIDDEN"]
    foreign = other_tenant.org_admin_token
    assert error_codes(await gql(client, COHORT, {"id": cohort["id"]}, token=foreign)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, COHORT, {"id": cohort["id"], "org": tenant.org_id}, token=foreign)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, DELETE, {"id": cohort["id"]}, token=foreign)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, UPDATE, {"id": cohort["id"], "name": "stolen"}, token=foreign)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, MEMBERS, {"cohort": cohort["id"]}, token=foreign)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, CREATE, {"name": "x", "d": definition, "org": tenant.org_id}, token=foreign)) == ["NOT_FOUND"]
    by_admin = await gql_data(client, COHORT, {"id": cohort["id"], "org": tenant.org_id}, tenant.admin_token)
    assert by_admin["cohort"]["name"] == "c"


async def test_deleting_a_subject_removes_their_memberships(client, loaded):
    tenant, _ = loaded
    token = tenant.org_admin_token
    listed = await create(client, token, {"kind": "STATIC", "personIds": ["u:p1", "a:anon-1", "u:p4"]})
    assert listed["memberCount"] == 2
    done = (await gql_data(client, DELETE_SUBJECT, {"user": "p1"}, token))["deleteSubjectData"]
    assert done["persons"] == 2  # u:p1 and its linked a:anon-1
    found = (await gql_data(client, COHORT, {"id": listed["id"]}, token))["cohort"]
    assert found["memberCount"] == 1
    assert await members(client, token, listed["id"]) == ["u:p4"]
    async with connection() as conn:
        stored = await conn.fetchval("SELECT definition::text FROM cohorts WHERE id = $1", uuid.UUID(listed["id"]))
    assert "p1" not in stored and "anon-1" not in stored


async def test_a_cohort_too_large_to_compute_at_once_is_saved_for_the_scheduler(client, loaded, settings, monkeypatch):
    """A computation cancelled by the statement timeout leaves the cohort saved, uncomputed and
    without an earlier definition's members; the scheduler computes it."""
    from app.services.insights import cohorts
    from workers.scheduler import run_jobs_once

    tenant, events = loaded
    token = tenant.org_admin_token
    cohort = await create(client, token, {"kind": "STATIC", "personIds": ["u:p1"]})
    real = cohorts.compute

    async def slow(conn, *args, **kwargs):
        await conn.execute("SET LOCAL statement_timeout = '50ms'")
        await conn.execute("SELECT pg_sleep(1)")
        return await real(conn, *args, **kwargs)

    monkeypatch.setattr(cohorts, "compute", slow)
    saved = (await gql_data(client, UPDATE, {"id": cohort["id"], "d": BEHAVIORAL}, token))["updateCohort"]
    assert saved["kind"] == "BEHAVIORAL" and saved["memberCount"] is None and saved["computedAt"] is None
    assert await members(client, token, cohort["id"]) == []
    made = (await gql_data(client, CREATE, {"name": "big", "d": BEHAVIORAL}, token))["createCohort"]
    assert made["memberCount"] is None
    monkeypatch.setattr(cohorts, "compute", real)
    await run_jobs_once(settings)
    for cid in (cohort["id"], made["id"]):
        found = (await gql_data(client, COHORT, {"id": cid}, token))["cohort"]
        expected = sorted(did(events, now=computed_at(found), days=7, min_count=3, minimum_amount=10))
        assert await members(client, token, cid) == expected
