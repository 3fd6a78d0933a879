"""The public contract: the committed SDL, descriptions, introspection, and safe defaults."""

from __future__ import annotations

import os
from pathlib import Path

import strawberry
from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType

from app.graphql import ErrorPolicy
from app.settings import Settings
from schema import build_schema
from tests.support.graphql import error_codes, gql

SDL_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_served_schema_matches_committed_sdl():
    """Third parties build on schema.graphql: regenerate it with `python -m schema > schema.graphql`."""
    assert build_schema().as_str().strip() == SDL_FILE.read_text().strip()


def test_every_public_type_field_and_argument_has_a_description():
    schema = build_schema()._schema
    missing: list[str] = []
    for name, gtype in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID", "DateTime", "JSON"}:
            continue
        if not gtype.description:
            missing.append(name)
        if isinstance(gtype, GraphQLObjectType | GraphQLInputObjectType):
            for field_name, field in gtype.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(gtype, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in gtype.values.items() if not value.description]
    assert missing == []


async def test_introspection_is_on(client, tenant):
    body = await gql(client, "{ __schema { queryType { name } } }", token=tenant.org_admin_token)
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_query_depth_is_limited(settings: Settings):
    """Our types are shallow today; the limit is tested at 1 so it keeps guarding deeper ones."""
    from app.graphql import schema_extensions
    from tests.support.settings import settings_with

    schema = build_schema(schema_extensions(settings_with(settings, query_depth_limit=1)))
    query = '{ profileOverview(profileId: "x", range: {preset: LAST_7_DAYS}) { range { from } } }'
    result = await schema.execute(query)
    assert result.data is None
    assert "exceeds maximum operation depth of 1" in result.errors[0].message


async def test_aliases_are_limited(client, tenant, settings: Settings):
    aliases = " ".join(f"a{i}: viewer {{ role }}" for i in range(settings.query_alias_limit + 1))
    body = await gql(client, "{ " + aliases + " }", token=tenant.org_admin_token)
    assert "aliases" in body["errors"][0]["message"].lower()


async def test_token_count_is_limited(client, tenant, settings: Settings):
    fields = " ".join("viewer { role }" for _ in range(settings.query_token_limit // 3))
    body = await gql(client, "{ " + fields + " }", token=tenant.org_admin_token)
    assert "token" in body["errors"][0]["message"].lower()


async def test_oversized_body_is_refused_before_parsing(client, tenant, settings: Settings):
    padding = "x" * (settings.max_body_bytes + 10)
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { role } }", "variables": {"pad": padding}},
        headers={"Authorization": f"Bearer {tenant.org_admin_token}"},
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_unexpected_errors_are_masked_with_a_request_id(caplog):
    @strawberry.type
    class Query:
        @strawberry.field
        def broken(self) -> int:
            raise RuntimeError("database password is hunter2")

    schema = strawberry.Schema(query=Query, extensions=[ErrorPolicy])
    result = await schema.execute("{ broken }")
    error = result.errors[0]
    assert "hunter2" not in error.message
    assert error.extensions["code"] == "INTERNAL_SERVER_ERROR"
    request_id = error.extensions["requestId"]
    assert request_id in error.message
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)


async def test_health_reports_database_and_broadcast(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "broadcast": True, "process": os.getpid()}


async def test_unknown_field_is_a_validation_error(client, tenant):
    body = await gql(client, "{ nope }", token=tenant.org_admin_token)
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_a_syntax_error_is_a_validation_error_with_its_location(client, tenant):
    body = await gql(client, "{ viewer { role ", token=tenant.org_admin_token)
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert body["errors"][0]["message"].startswith("Syntax Error")
    assert body["errors"][0]["locations"] == [{"line": 1, "column": 17}]
