"""Who may call what: every root field declares its access next to its resolver (and in its
description), and each kind of credential is tried on every field, read from the schema: the
declared refusals happen, and nobody the declaration admits is refused."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from graphql.pyutils import Undefined

from app.auth import ANONYMOUS, Access, viewer_from_credential
from app.graphql import Context
from schema import build_schema
from tests.support.graphql import gql
from tests.support.tenants import Tenant

REFUSALS = {"UNAUTHENTICATED", "FORBIDDEN"}
SUBSCRIBE_WAIT = 1.0  # seconds: a refusal is the stream's first result; an admitted one waits for events
SCHEMA = build_schema()
ROOTS = {"query": SCHEMA._schema.query_type, "mutation": SCHEMA._schema.mutation_type,
         "subscription": SCHEMA._schema.subscription_type}  # fmt: skip


def unwrap(gtype: Any) -> Any:
    while isinstance(gtype, GraphQLNonNull | GraphQLList):
        gtype = gtype.of_type
    return gtype


def literal(gtype: Any, name: str, ids: dict[str, str]) -> str:
    """A value of the argument's type that passes validation; ids are the caller's tenant's."""
    inner = gtype.of_type if isinstance(gtype, GraphQLNonNull) else gtype
    if isinstance(inner, GraphQLList):
        return f"[{literal(inner.of_type, name, ids)}]"
    if isinstance(inner, GraphQLEnumType):
        return next(iter(inner.values))
    if isinstance(inner, GraphQLInputObjectType):
        if "preset" in inner.fields:
            return "{preset: LAST_7_DAYS}"
        required = [(n, f) for n, f in inner.fields.items() if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined]
        return "{" + ", ".join(f"{n}: {literal(f.type, n, ids)}" for n, f in required) + "}"
    scalar = {"Int": "1", "Float": "0.5", "Boolean": "false", "Date": '"2026-01-01"', "DateTime": '"2026-01-01T00:00:00Z"'}
    if inner.name == "ID":
        return f'"{ids.get(name, str(uuid.uuid4()))}"'
    if inner.name == "String":
        return '"EUR"' if "currency" in name.lower() else '"access-test"'
    return scalar.get(inner.name, '"x"')


def first_field(gtype: Any) -> str:
    gtype = unwrap(gtype)
    if isinstance(gtype, GraphQLScalarType | GraphQLEnumType):
        return ""
    name, field = next(iter(gtype.fields.items()))
    inner = first_field(field.type)
    return f"{{ {name} {inner} }}" if inner else f"{{ {name} }}"


def operation(kind: str, name: str, ids: dict[str, str]) -> str:
    field = ROOTS[kind].fields[name]
    scoped = "profileId" if "profileId" in field.args else "organizationId"  # the narrowest scope a field takes
    args = [f"{a}: {literal(spec.type, a, ids)}" for a, spec in field.args.items()
            if isinstance(spec.type, GraphQLNonNull) or a == scoped]  # fmt: skip
    call = f"{name}({', '.join(args)})" if args else name
    return f"{kind} {{ {call} {first_field(field.type)} }}"


def declared(kind: str, name: str) -> Access | None:
    root = {"query": SCHEMA.query, "mutation": SCHEMA.mutation, "subscription": SCHEMA.subscription}[kind]
    for field in root.__strawberry_definition__.fields:
        if field.graphql_name == name or SCHEMA.config.name_converter.get_graphql_name(field) == name:
            return field.metadata.get("access") if field.metadata else None
    raise KeyError(name)


FIELDS = [(kind, name) for kind, root in ROOTS.items() for name in root.fields]
CREDENTIALS = ("anonymous", "ingestion_key", "provider", "viewer", "org_admin", "service", "admin")
# Fields a credential of its own authenticates (a refresh token), not the caller: given a
# token that is not one, every caller is refused alike.
SELF_AUTHENTICATED = {"refreshToken"}


def credential(tenant: Tenant, kind: str) -> str | None:
    return {"anonymous": None, "ingestion_key": tenant.ingestion_key, "provider": tenant.provider_token,
            "org_admin": tenant.org_admin_token, "service": tenant.service_token, "admin": tenant.admin_token,
            "viewer": tenant.viewer_token}[kind]  # fmt: skip


async def outcome(app: Any, client: Any, tenant: Tenant, kind: str, name: str, who: str) -> str | None:
    """The error code the field answers this credential with (None: no error)."""
    ids = {"profileId": tenant.profile_id, "organizationId": tenant.org_id}
    text = operation(kind, name, ids)
    token = credential(tenant, who)
    if kind != "subscription":
        body = await gql(client, text, token=token)
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
        return codes[0] if codes else None
    viewer = await viewer_from_credential(f"Bearer {token}") if token else ANONYMOUS
    request = SimpleNamespace(app=app, headers={})
    context = Context(request=request, response=None, viewer=viewer)  # type: ignore[arg-type]
    stream = await SCHEMA.subscribe(text, context_value=context)
    if not hasattr(stream, "__anext__"):
        errors = stream.errors or []
    else:
        try:
            first = await asyncio.wait_for(stream.__anext__(), timeout=SUBSCRIBE_WAIT)
            errors = first.errors or []
        except (TimeoutError, StopAsyncIteration):
            errors = []
        finally:
            await stream.aclose()
    codes = [(e.extensions or {}).get("code") or getattr(e.original_error, "code", None) for e in errors]
    return codes[0] if codes else None



@pytest.mark.parametrize(("kind", "name"), FIELDS, ids=[f"{k}.{n}" for k, n in FIELDS])
async def test_every_field_refuses_exactly_whom_it_declares(app, client, tenant, kind, name):
    access = declared(kind, name)
    assert access is not None, f"{kind} field {name} declares no access (use resolvers.common.guarded)"
    assert access.text in ROOTS[kind].fields[name].description, "the declaration is stated in the description"
    outcomes = {who: await outcome(app, client, tenant, kind, name, who) for who in CREDENTIALS}
    refused = {who for who, code in outcomes.items() if code in REFUSALS}
    if name in SELF_AUTHENTICATED:
        assert access is Access.ANYONE and set(outcomes.values()) == {"UNAUTHENTICATED"}, (name, outcomes)
        return
    assert refused == set(CREDENTIALS) - access.admits, (name, access, outcomes)
