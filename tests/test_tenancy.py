"""No credential of one organization ever reads or changes another organization's data.

Every root field is read from the schema (tests/support/schema_operations.py), so a new
query, mutation or subscription is tried without touching this file, and
`test_every_field_is_covered` names any field whose ids these tests cannot aim at a real
object of another tenant.

The victim (tests/support/victim.py) has views, money, fraud alerts, costs and settings with
values nobody else has. Every query is asked with every credential of another tenant, with
its own ids, with the victim's ids swapped in, and with each mix of the two; no answer may
hold any value the victim's data put into the victim's own answers (amounts, counts, rates,
names, ids), whatever else it says. Every mutation naming a victim's object is refused and
leaves every row of the victim as it was; every subscription on a victim's id is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from app.auth import Access, Role, issue_token
from app.database import connection
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.schema_operations import (
    ROOT_KINDS,
    Side,
    enum_values,
    field_id_paths,
    id_arguments,
    id_variants,
    object_kind,
    operation,
    root_fields,
)
from tests.support.tenants import Tenant, make_tenant
from tests.support.victim import SEEDED_KINDS, seed_victim

# Mutations on the caller's own account, which name no other tenant's object: their
# cross-tenant refusals (signing in to an organization one is not a member of, a token of
# one session ending another) are tested in tests/test_accounts.py.
OWN_ACCOUNT = {"login", "refreshToken", "logout", "acceptInvitation", "resetPassword", "changePassword"}
QUERIES = root_fields("query")
MUTATIONS = {name: field for name, field in root_fields("mutation").items() if name not in OWN_ACCOUNT}
SUBSCRIPTIONS = root_fields("subscription")
# who you are, your organizations, a public IP lookup, the experiment calculators (numbers the caller sends),
# the list of notification kinds; API performance and database pools (installation-wide
# figures, platform admins only)
NO_TENANT_VALUES = {"viewer", "me", "organizations", "checkIp", "analyzeExperiment", "sampleSize", "notificationKinds",
                    "apiPerformance", "databaseHealth"}
REFUSALS = {"NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT"}
DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")
POSITIONS = {"activePeriods"}  # stickiness: 1..N in every answer, data or not
VOCABULARY = enum_values() | {role.value for role in Role}  # words of the API, not of a tenant


def side_of(tenant: Tenant, **objects: str) -> Side:
    """A tenant's objects by kind; objects it does not have are ids nobody has."""
    unknown = {kind: str(uuid.uuid4()) for kind in SEEDED_KINDS}
    return unknown | {"organization": tenant.org_id, "profile": tenant.profile_id} | objects


def credentials(tenant: Tenant) -> dict[str, str]:
    return {
        "org admin": tenant.org_admin_token,
        "provider": tenant.provider_token,
        "service": tenant.service_token,
        "ingestion key": tenant.ingestion_key,
        "viewer": tenant.viewer_token,
    }


def provider_of_other_profile(tenant: Tenant) -> str:
    return issue_token(role=Role.PROVIDER, organization_id=tenant.organization.id, profile_id=tenant.other_profile.id)


# --------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("kind", ROOT_KINDS)
def test_every_field_is_covered(kind: str) -> None:
    """Each id argument of each root field names a kind of object the victim has, so the tests
    below can aim it at a real foreign object; and each mutation or subscription takes an id
    (one without could not be aimed at another tenant at all: it needs a test of its own)."""
    uncovered = []
    for name, field in root_fields(kind).items():
        paths = field_id_paths(field)
        unknown = [path for path in paths if object_kind(name, path) not in SEEDED_KINDS]
        if unknown:
            uncovered.append(f"{name}: which victim object do {unknown} name?")
        elif not paths and kind != "query" and name not in OWN_ACCOUNT:
            uncovered.append(f"{name}: takes no id")
    assert not uncovered, f"{kind} fields the tenancy tests do not cover: {uncovered}"


# --------------------------------------------------------------------------- queries: values


def values_in(data: Any) -> set[str]:
    """Every value of an answer as text: numbers, ids, names, and the cells of a text file;
    not booleans, nulls or dates (every tenant's answers have the same dates), nor positions
    (a distribution's 1..N: every tenant's answers have them all)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in POSITIONS:
                found |= values_in(value)
    elif isinstance(data, list):
        for value in data:
            found |= values_in(value)
    elif isinstance(data, int | float) and not isinstance(data, bool):
        found.add(_number(data))
    elif isinstance(data, str) and "\n" in data:
        found |= values_in([cell for row in csv.reader(io.StringIO(data)) for cell in row])
    elif isinstance(data, str) and data and not DATE_LIKE.match(data):
        found.add(_number(float(data)) if _is_number(data) else data)
    return found


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class World:
    attacker: Tenant
    victim: Tenant
    victim_side: Side
    fingerprint: dict[str, set[str]]  # per query: values the victim's data put in the victim's answer
    identity: set[str]  # the victim's ids and name, there before its data
    # per query: values its own answer about the victim gained from the victim's data; a value
    # some other answer showed before (a count of another test's rows) may still be one of these
    own: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    @property
    def forbidden(self) -> set[str]:
        return set().union(*self.fingerprint.values()) | self.identity


async def victim_answers(client: Any, victim: Tenant, side: Side, *, seeded: bool) -> dict[str, set[str]]:
    """Each query about the victim, asked by a platform admin with each mix of the victim's
    ids (some fields take one id or another, not both): the values of its answers. Once the
    victim has its data, each query must have answered at least once."""
    answers = {}
    for name, field in QUERIES.items():
        answers[name] = set()
        answered = False
        for label, sides in id_variants(field, side, side):
            op = operation("query", name, field, sides)
            body = await gql(client, op.document, op.variables, token=victim.admin_token)
            assert set(error_codes(body)) <= {"NOT_FOUND", "BAD_USER_INPUT"}, (name, label, body)
            answered |= not body.get("errors")
            answers[name] |= values_in(body.get("data"))
        assert answered or not seeded, f"a platform admin got no answer to {name} about the victim"
    return answers


@pytest_asyncio.fixture(scope="module")
async def world(app: Any, client: Any, worker: Any, settings: Any) -> World:
    """An attacker with no data, and the victim: its answers before and after its data went in."""
    attacker = await make_tenant(settings)
    victim = await make_tenant(settings, name=f"Victim {uuid.uuid4().hex[:8]}")
    before = await victim_answers(client, victim, side_of(victim), seeded=False)
    victim_side = side_of(victim, **await seed_victim(client, worker, victim))
    after = await victim_answers(client, victim, victim_side, seeded=True)
    baseline = set().union(*before.values()) | VOCABULARY
    identity = {victim.org_id, victim.profile_id, str(victim.other_profile.id), victim.organization.name}
    own = {name: after[name] - before[name] - VOCABULARY for name in QUERIES}
    return World(attacker, victim, victim_side, {name: after[name] - baseline for name in QUERIES}, identity, own)


@pytest.mark.parametrize("name", sorted(QUERIES))
async def test_no_query_shows_another_tenants_values(client: Any, world: World, name: str) -> None:
    """Any refusal is fine; any of the victim's values in an answer is a leak, echoed id or not."""
    field = QUERIES[name]
    assert world.fingerprint[name] or world.own[name] or name in NO_TENANT_VALUES, (
        f"the victim's data shows nothing of its own in {name}: seed data it reports (tests/support/victim.py)"
    )
    own = side_of(world.attacker)
    for who, token in credentials(world.attacker).items():
        for label, sides in id_variants(field, own, world.victim_side):
            op = operation("query", name, field, sides)
            body = await gql(client, op.document, op.variables, token=token)
            assert set(error_codes(body)) <= REFUSALS, (who, label, body)
            leaked = values_in(body.get("data")) & world.forbidden
            assert not leaked, f"{name}({label}) as the other tenant's {who} shows the victim's {sorted(leaked)}: {body}"


# --------------------------------------------------------------------------- queries: refusals by profile


PROFILE_QUERIES = sorted(name for name, field in QUERIES.items() if "profileId" in field.args)


@pytest.mark.parametrize("name", PROFILE_QUERIES)
async def test_profile_queries_never_cross_tenants(client, tenant, other_tenant, name):
    """A profile of one tenant is NOT_FOUND to another tenant, and to a provider of its sibling."""
    field = QUERIES[name]
    mine = operation("query", name, field, {"profileId": side_of(tenant)})
    assert (await gql(client, mine.document, mine.variables, token=tenant.provider_token)).get("errors") is None
    assert (await gql(client, mine.document, mine.variables, token=tenant.org_admin_token)).get("errors") is None
    assert (await gql(client, mine.document, mine.variables, token=other_tenant.admin_token)).get("errors") is None
    refused = {
        "other tenant's org admin": other_tenant.org_admin_token,
        "other tenant's provider": other_tenant.provider_token,
        "same tenant, other profile's provider": provider_of_other_profile(tenant),
    }
    for who, token in refused.items():
        body = await gql(client, mine.document, mine.variables, token=token)
        assert body["data"] is None, who
        assert error_codes(body) == ["NOT_FOUND"], who
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        op = operation("query", name, field, {"profileId": side_of(tenant, profile=unknown)})
        assert error_codes(await gql(client, op.document, op.variables, token=tenant.org_admin_token)) == ["NOT_FOUND"]


# --------------------------------------------------------------------------- mutations


# What every request adds, flushed by the API processes every few seconds: the victim's own
# earlier requests may land there while a test watches, whatever the attacker did.
OPERATIONS_RECORDS = {"api_timings", "api_processes"}


async def footprint(org_id: str) -> dict[str, Any]:
    """Every row of the organization in every table that has one (a digest per table), and its
    own row: what any mutation could change about it."""
    org = uuid.UUID(org_id)
    async with connection() as conn:
        tables = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'organization_id' AND NOT a.attisdropped"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
        )
        found: dict[str, Any] = {"organizations": await conn.fetchval("SELECT o::text FROM organizations o WHERE id = $1", org)}
        for (table,) in tables:
            if table in OPERATIONS_RECORDS:
                continue
            digest = f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t WHERE organization_id = $1"
            found[table] = await conn.fetchval(digest, org)
    return found


async def attacker_side(client: Any, tenant: Tenant) -> Side:
    """The attacker's own cost and fraud rule, so a mutation can mix them with victim ids."""
    cost = await gql_data(
        client, 'mutation($d: Date!) { createCost(category: TOOLS, amountMinor: 1200, currency: "EUR", date: $d, '
        'description: "own") { id } }', {"d": "2026-01-05"}, tenant.org_admin_token,
    )  # fmt: skip
    rules = await gql_data(client, "query { fraudRules { id } }", {}, tenant.org_admin_token)
    return side_of(tenant, cost=cost["createCost"]["id"], **{"fraud rule": rules["fraudRules"][0]["id"]})


def refusal_is_about_an_id(body: dict[str, Any], field: Any) -> bool:
    """NOT_FOUND or FORBIDDEN, or bad input on an id: not a sample this test got wrong."""
    paths = field_id_paths(field)
    for error in body.get("errors") or []:
        extensions = error.get("extensions") or {}
        if extensions.get("code") not in REFUSALS:
            return False
        if extensions["code"] == "BAD_USER_INPUT" and not any(str(extensions.get("field")).endswith(p.rsplit(".", 1)[-1]) for p in paths):
            return False
    return True


@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_mutations_never_reach_another_tenant(client, world, tenant, name):
    """Every mix of the sender's and the victim's ids with at least one of the victim's: a
    refusal on the id, or a per-event rejection of it, and the victim exactly as it was."""
    field = MUTATIONS[name]
    own = await attacker_side(client, tenant)
    before = await footprint(world.victim.org_id)
    for who, token in credentials(tenant).items():
        for label, sides in id_variants(field, own, world.victim_side):
            if all(side is not world.victim_side for side in sides.values()):
                continue  # only the sender's own objects: not a crossing
            op = operation("mutation", name, field, sides)
            body = await gql(client, op.document, op.variables, token=token)
            if body.get("errors"):
                assert refusal_is_about_an_id(body, field), (who, label, body)
                continue
            result = body["data"][name]
            assert isinstance(result, dict) and "rejected" in result, (who, label, "succeeded with a foreign id", body)
            assert result["accepted"] == 0, (who, label, body)
            assert result["rejected"] and {r["field"] for r in result["rejected"]} == {"profileId"}, (who, label, body)
    assert await footprint(world.victim.org_id) == before


# --------------------------------------------------------------------------- subscriptions


async def subscribed_objects(tenant: Tenant, field: Any) -> Side:
    """Objects a subscription follows by id that a fresh tenant lacks (its experiment)."""
    from app.services.experiments import definitions as experiments

    if "experiment" not in {object_kind("", path) for path in field_id_paths(field)}:
        return {}
    org = uuid.UUID(tenant.org_id)
    draft = experiments.Definition(
        key=f"follow-{uuid.uuid4().hex[:8]}", name="followed", hypothesis="",
        variants=(experiments.Variant("control", "Control", 1.0), experiments.Variant("b", "B", 1.0)), allocation=1.0,
        targeting=experiments.Targeting(), metrics=(), analysis=experiments.Analysis(),
    )  # fmt: skip
    created = await experiments.create_experiment(org=org, actor="tenancy", definition=draft)
    return {"experiment": str(created.id)}


@pytest.mark.parametrize("name", sorted(SUBSCRIPTIONS))
async def test_subscriptions_never_cross_tenants(app, settings, tenant, other_tenant, name):
    """Driven in-process, as a websocket connection would after connection_init: the sender's
    own ids subscribe, every mix with another tenant's ids is refused."""
    import asyncio
    from types import SimpleNamespace

    from app.auth import viewer_from_token
    from app.graphql import Context, schema_extensions
    from schema import build_schema

    schema = build_schema(schema_extensions(settings))
    field = SUBSCRIPTIONS[name]

    async def first(sides: dict[str, Side | None], token: str, wait: float) -> Any:
        """The first result, or "subscribed" if nothing (no refusal) came within `wait`."""
        op = operation("subscription", name, field, sides)
        context = Context(request=SimpleNamespace(app=app), response=None, viewer=viewer_from_token(token))
        stream = await schema.subscribe(op.document, variable_values=op.variables, context_value=context)
        if not hasattr(stream, "__anext__"):
            return stream
        try:
            return await asyncio.wait_for(stream.__anext__(), wait)
        except TimeoutError:
            return "subscribed"
        finally:
            await stream.aclose()

    own = side_of(tenant, **await subscribed_objects(tenant, field))
    foreign = side_of(other_tenant, **await subscribed_objects(other_tenant, field))
    mine = dict.fromkeys(id_arguments(field), own)
    if Access.PLATFORM_ADMINS.text in (field.description or ""):
        # Installation-wide figures: no tenant's token subscribes, naming its own ids or another's.
        for sides in [mine] + [sides for _, sides in id_variants(field, own, foreign)]:
            for token in (tenant.org_admin_token, tenant.provider_token, tenant.viewer_token):
                result = await first(sides, token, wait=15.0)
                assert result != "subscribed" and result.data is None, sides
                assert {e.extensions.get("code") for e in result.errors} == {"FORBIDDEN"}, result.errors
        return
    for token in (tenant.org_admin_token, tenant.provider_token) if "profileId" in field.args else (tenant.org_admin_token,):
        accepted = await first(mine, token, wait=1.0)
        assert accepted == "subscribed" or not accepted.errors, accepted
    refused = {"org admin": tenant.org_admin_token, "provider": tenant.provider_token}
    crossings = [(label, sides) for label, sides in id_variants(field, own, foreign) if any(s is foreign for s in sides.values())]
    if "profileId" in field.args:
        refused["same tenant, other profile's provider"] = provider_of_other_profile(tenant)
        crossings.append(("sibling profile", mine))
    for label, sides in crossings:
        for who, token in refused.items():
            if label == "sibling profile" and who != "same tenant, other profile's provider":
                continue
            result = await first(sides, token, wait=15.0)  # a refusal may be slow on a loaded machine, never absent
            assert result != "subscribed", (who, label)
            assert result.data is None, (who, label)
            # A foreign id is NOT_FOUND; a provider may be FORBIDDEN to follow an organization at all.
            allowed = {"NOT_FOUND", "FORBIDDEN"} if who == "provider" and "organizationId" in field.args else {"NOT_FOUND"}
            codes = {e.extensions.get("code") for e in result.errors}
            assert codes and codes <= allowed, (who, label, result.errors)
