"""Every query and subscription that takes a profile id, tried with every other tenant's
credentials, and every mutation that takes an id, sent with another tenant's ids.

The lists are read from the schema itself, so a new field is covered without touching
this file.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLEnumType, GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLScalarType

from schema import build_schema
from tests.support.graphql import error_codes, gql

DEFAULT_ARGS = {
    "range": '{preset: LAST_7_DAYS}',
    "granularity": "DAY",
    "limit": "5",
    "format": "CSV",
}


def _unwrap(gtype: Any) -> Any:
    while isinstance(gtype, GraphQLNonNull | GraphQLList):
        gtype = gtype.of_type
    return gtype


def _selection(gtype: Any, depth: int = 0) -> str:
    """Every scalar field, and one level of nested objects."""
    gtype = _unwrap(gtype)
    if isinstance(gtype, GraphQLScalarType | GraphQLEnumType):
        return ""
    parts = []
    for name, field in gtype.fields.items():
        inner = _unwrap(field.type)
        if isinstance(inner, GraphQLObjectType):
            if depth < 1:
                parts.append(f"{name} {{ {_selection(inner, depth + 1)} }}")
        else:
            parts.append(name)
    return " ".join(parts)


def profile_scoped_operations(kind: str) -> list[tuple[str, str]]:
    schema = build_schema()._schema
    root = schema.query_type if kind == "query" else schema.subscription_type
    operations = []
    for name, field in root.fields.items():
        if "profileId" not in field.args:
            continue
        args = ", ".join(
            ["profileId: $profileId"]
            + [f"{arg}: {DEFAULT_ARGS[arg]}" for arg, spec in field.args.items() if arg != "profileId" and isinstance(spec.type, GraphQLNonNull)]
        )
        selection = _selection(field.type)
        body = f"{name}({args})" + (f" {{ {selection} }}" if selection else "")
        operations.append((name, f"{kind}($profileId: ID!) {{ {body} }}"))
    return operations


QUERIES = profile_scoped_operations("query")


def test_the_schema_has_profile_scoped_queries():
    assert {"profileOverview", "profileTimeseries", "recentProfileViews"} <= {name for name, _ in QUERIES}


@pytest.mark.parametrize(("name", "operation"), QUERIES, ids=[n for n, _ in QUERIES])
async def test_profile_queries_never_cross_tenants(client, tenant, other_tenant, name, operation):
    variables = {"profileId": tenant.profile_id}
    own = await gql(client, operation, variables, token=tenant.provider_token)
    assert own.get("errors") is None, own
    org_admin = await gql(client, operation, variables, token=tenant.org_admin_token)
    assert org_admin.get("errors") is None, org_admin

    refused = {
        "other tenant's org admin": other_tenant.org_admin_token,
        "other tenant's provider": other_tenant.provider_token,
        "same tenant, other profile's provider": _provider_of_other_profile(tenant),
    }
    for who, token in refused.items():
        body = await gql(client, operation, variables, token=token)
        assert body["data"] is None, who
        assert error_codes(body) == ["NOT_FOUND"], who

    admin = await gql(client, operation, variables, token=other_tenant.admin_token)
    assert admin.get("errors") is None

    unknown = await gql(client, operation, {"profileId": "00000000-0000-0000-0000-000000000000"}, token=tenant.org_admin_token)
    assert error_codes(unknown) == ["NOT_FOUND"]
    malformed = await gql(client, operation, {"profileId": "not-a-uuid"}, token=tenant.org_admin_token)
    assert error_codes(malformed) == ["NOT_FOUND"]


def _provider_of_other_profile(tenant: Any) -> str:
    from app.auth import Role, issue_token

    return issue_token(role=Role.PROVIDER, organization_id=tenant.organization.id, profile_id=tenant.other_profile.id)


# --------------------------------------------------------------------------- mutations
#
# Every mutation, generated from the schema: every ID argument (also inside inputs, e.g.
# an event's profileId) names the *other* tenant's object, every other argument gets a
# valid sample. Whatever credential of this tenant sends it, the answer is a refusal or a
# per-event rejection on the id, and the other tenant's data is exactly as it was.

SAMPLE_STRINGS = {"type": "profile.viewed", "currency": "EUR", "userId": "tenancy-subject", "anonymousId": "tenancy-device"}
SAMPLE_INTS = {"amountMinor": 1200, "engagementMs": 1000, "ipRetentionDays": 1, "eventRetentionDays": 40}
REFUSALS = {"NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT"}


def _sample(gtype: Any, name: str, foreign: dict[str, str]) -> Any:
    from graphql import GraphQLEnumType, GraphQLInputObjectType

    nullable = gtype.of_type if isinstance(gtype, GraphQLNonNull) else gtype
    if isinstance(nullable, GraphQLList):
        return [_sample(nullable.of_type, name, foreign)]
    if isinstance(nullable, GraphQLInputObjectType):
        return {
            field_name: _sample(field.type, field_name, foreign)
            for field_name, field in nullable.fields.items()
            if field_name in foreign or field_name in SAMPLE_STRINGS or field_name in SAMPLE_INTS or field_name == "eventId"
            or isinstance(field.type, GraphQLNonNull)
        }  # fmt: skip
    if isinstance(nullable, GraphQLEnumType):
        values = list(nullable.values)
        return "PROFILE_VIEWED" if "PROFILE_VIEWED" in values else values[0]
    if nullable.name == "ID":
        return foreign.get(name, foreign["profileId"])
    if name == "eventId":
        import uuid

        return f"tenancy-{uuid.uuid4()}"
    if nullable.name == "Int":
        return SAMPLE_INTS.get(name, 1)
    if nullable.name == "Boolean":
        return False
    return SAMPLE_STRINGS.get(name, "x")


MUTATIONS = list(build_schema()._schema.mutation_type.fields.items())


def _mutation_operation(name: str, field: Any, foreign: dict[str, str]) -> tuple[str, dict[str, Any]]:
    declared, passed, variables = [], [], {}
    for arg_name, arg in field.args.items():
        if arg_name in foreign or _mentions_ids(arg.type) or isinstance(arg.type, GraphQLNonNull) or arg_name in SAMPLE_STRINGS or arg_name in SAMPLE_INTS:
            declared.append(f"${arg_name}: {arg.type}")
            passed.append(f"{arg_name}: ${arg_name}")
            variables[arg_name] = _sample(arg.type, arg_name, foreign)
    selection = _selection(field.type)
    body = f"{name}({', '.join(passed)})" + (f" {{ {selection} }}" if selection else "")
    return f"mutation({', '.join(declared)}) {{ {body} }}", variables


def _mentions_ids(gtype: Any, depth: int = 0) -> bool:
    from graphql import GraphQLInputObjectType

    inner = _unwrap(gtype)
    if isinstance(inner, GraphQLScalarType):
        return inner.name == "ID"
    if isinstance(inner, GraphQLInputObjectType) and depth < 3:
        return any(_mentions_ids(f.type, depth + 1) for f in inner.fields.values())
    return False


async def _footprint(tenant: Any) -> dict[str, Any]:
    """Everything a mutation could change about a tenant."""
    import uuid

    from app.database import connection

    org = uuid.UUID(tenant.org_id)
    async with connection() as conn:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table} WHERE organization_id = $1", org)
            for table in ("events", "outbox", "sessions", "profile_events", "profile_rollups")
        } | dict(
            await conn.fetchrow("SELECT ip_retention_days, event_retention_days, name FROM organizations WHERE id = $1", org)
        )


def test_every_mutation_is_covered():
    names = {name for name, _ in MUTATIONS}
    assert {"trackEvent", "trackEvents", "publishDomainEvents", "updateOrganizationSettings", "deleteSubjectData"} <= names


@pytest.mark.parametrize(("name", "field"), MUTATIONS, ids=[n for n, _ in MUTATIONS])
async def test_mutations_never_reach_another_tenant(client, tenant, other_tenant, name, field):
    if not _mentions_ids_anywhere(field):
        pytest.skip(f"{name} takes no id")
    foreign = {"profileId": other_tenant.profile_id, "organizationId": other_tenant.org_id}
    # The other tenant has a subject the mutation could delete, and data it could change.
    await gql(
        client,
        "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted } }",
        {"e": [{"type": "profile.viewed", "profileId": other_tenant.profile_id, "userId": "tenancy-subject", "anonymousId": "tenancy-device"}]},
        token=other_tenant.org_admin_token,
    )
    before = await _footprint(other_tenant)
    for who, token in {
        "org admin": tenant.org_admin_token,
        "service": tenant.service_token,
        "ingestion key": tenant.ingestion_key,
        "provider": tenant.provider_token,
    }.items():
        operation, variables = _mutation_operation(name, field, foreign)
        body = await gql(client, operation, variables, token=token)
        codes = set(error_codes(body))
        if codes:
            assert codes <= REFUSALS, (who, body)
            continue
        result = body["data"][name]
        assert "rejected" in result, (who, "a mutation with a foreign id succeeded", body)
        assert result["accepted"] == 0, (who, body)
        assert result["rejected"] and {r["field"] for r in result["rejected"]} == {"profileId"}, (who, body)
    assert await _footprint(other_tenant) == before


def _mentions_ids_anywhere(field: Any) -> bool:
    return any(_mentions_ids(arg.type) for arg in field.args.values())


# --------------------------------------------------------------------------- subscriptions


SUBSCRIPTIONS = profile_scoped_operations("subscription")


def test_the_schema_has_profile_scoped_subscriptions():
    assert {"profileViews", "engagementUpdates"} <= {name for name, _ in SUBSCRIPTIONS}


@pytest.mark.parametrize(("name", "operation"), SUBSCRIPTIONS, ids=[n for n, _ in SUBSCRIPTIONS])
async def test_profile_subscriptions_never_cross_tenants(app, settings, tenant, other_tenant, name, operation):
    """Driven in-process, as a websocket connection would after connection_init."""
    import asyncio
    from types import SimpleNamespace

    from app.auth import viewer_from_token
    from app.graphql import Context, schema_extensions

    schema = build_schema(schema_extensions(settings))
    variables = {"profileId": tenant.profile_id}

    async def first(token: str, wait: float) -> Any:
        """The first result, or "subscribed" if nothing (no refusal) came within `wait`."""
        context = Context(request=SimpleNamespace(app=app), response=None, viewer=viewer_from_token(token))
        stream = await schema.subscribe(operation, variable_values=variables, context_value=context)
        if not hasattr(stream, "__anext__"):
            return stream
        try:
            return await asyncio.wait_for(stream.__anext__(), wait)
        except TimeoutError:
            return "subscribed"
        finally:
            await stream.aclose()

    assert await first(tenant.provider_token, wait=1.0) == "subscribed"
    assert await first(tenant.org_admin_token, wait=1.0) == "subscribed"
    for who, token in {
        "other tenant's org admin": other_tenant.org_admin_token,
        "other tenant's provider": other_tenant.provider_token,
        "same tenant, other profile's provider": _provider_of_other_profile(tenant),
    }.items():
        result = await first(token, wait=15.0)  # a refusal may be slow on a loaded machine, never absent
        assert result != "subscribed", who
        assert result.data is None, who
        assert [e.extensions.get("code") for e in result.errors] == ["NOT_FOUND"], (who, result.errors)


# --------------------------------------------------------------------------- organization ids


ORG_QUERIES = [
    (name, field) for name, field in build_schema()._schema.query_type.fields.items() if "organizationId" in field.args
]


def test_the_schema_has_organization_scoped_queries():
    assert {"profiles", "privacySettings", "subjectData"} <= {name for name, _ in ORG_QUERIES}


@pytest.mark.parametrize(("name", "field"), ORG_QUERIES, ids=[n for n, _ in ORG_QUERIES])
async def test_organization_queries_never_cross_tenants(client, tenant, other_tenant, name, field):
    """Another tenant's organizationId answers NOT_FOUND or nothing, and never echoes its data."""
    import json

    foreign = {"profileId": tenant.profile_id, "organizationId": tenant.org_id}
    declared, passed, variables = [], [], {}
    for arg_name, arg in field.args.items():
        if arg_name == "organizationId" or isinstance(arg.type, GraphQLNonNull) or arg_name in SAMPLE_STRINGS:
            declared.append(f"${arg_name}: {arg.type}")
            passed.append(f"{arg_name}: ${arg_name}")
            variables[arg_name] = _sample(arg.type, arg_name, foreign)
    selection = _selection(field.type)
    operation = f"query({', '.join(declared)}) {{ {name}({', '.join(passed)})" + (f" {{ {selection} }}" if selection else "") + " }"
    for who, token in {"other org admin": other_tenant.org_admin_token, "other provider": other_tenant.provider_token}.items():
        body = await gql(client, operation, variables, token=token)
        assert set(error_codes(body)) <= {"NOT_FOUND", "FORBIDDEN"}, (who, body)
        leaked = json.dumps(body.get("data"))
        assert tenant.org_id not in leaked and tenant.profile_id not in leaked, (who, body)
