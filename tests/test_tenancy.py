"""Every query that takes a profile id, tried with every other tenant's credentials.

The list of queries is read from the schema itself, so a new field that takes a
`profileId` is covered without touching this file.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLScalarType, GraphQLEnumType

from schema import build_schema
from tests.conftest import error_codes, gql

DEFAULT_ARGS = {
    "range": '{preset: LAST_7_DAYS}',
    "granularity": "DAY",
    "limit": "5",
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
