"""Credentials: what each kind of token may do, and every way a token can be wrong."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from app.auth import Role, issue_token
from tests.conftest import TEST_JWT_SECRET, error_codes, gql

VIEWER = "{ viewer { role organizationId profileId } }"
PROFILES = "{ profiles { id name } }"


def forged(claims: dict, *, key: str = TEST_JWT_SECRET, algorithm: str = "HS256") -> str:
    now = int(time.time())
    base = {"sub": "x", "role": "org_admin", "iss": "pulsegraph", "iat": now, "nbf": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)


def unsigned(claims: dict) -> str:
    """A JWT with `alg: none`, as an attacker would send it."""
    now = int(time.time())
    base = {"sub": "x", "role": "admin", "iss": "pulsegraph", "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, None, algorithm="none")


async def test_viewer_reports_the_token_scope(client, tenant):
    body = await gql(client, VIEWER, token=tenant.provider_token)
    assert body["data"]["viewer"] == {"role": "provider", "organizationId": tenant.org_id, "profileId": tenant.profile_id}


async def test_provider_sees_only_its_profile(client, tenant):
    body = await gql(client, PROFILES, token=tenant.provider_token)
    assert [p["id"] for p in body["data"]["profiles"]] == [tenant.profile_id]


async def test_org_admin_sees_its_organization_only(client, tenant, other_tenant):
    body = await gql(client, PROFILES, token=tenant.org_admin_token)
    ids = {p["id"] for p in body["data"]["profiles"]}
    assert ids == {tenant.profile_id, str(tenant.other_profile.id)}
    orgs = await gql(client, "{ organizations { id } }", token=tenant.org_admin_token)
    assert [o["id"] for o in orgs["data"]["organizations"]] == [tenant.org_id]


async def test_platform_admin_sees_every_organization(client, tenant, other_tenant):
    body = await gql(client, "{ organizations { id } }", token=tenant.admin_token)
    ids = {o["id"] for o in body["data"]["organizations"]}
    assert {tenant.org_id, other_tenant.org_id} <= ids


@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        (lambda org: forged({"org": org, "exp": int(time.time()) - 10}), "expired"),
        (lambda org: forged({"org": org, "nbf": int(time.time()) + 600}), "not valid yet"),
        (lambda org: forged({"org": org}, key="another-secret-" + "y" * 40), "invalid"),
        (lambda org: unsigned({"org": org}), "invalid"),
        (lambda org: forged({"org": org, "iss": "someone-else"}), "invalid"),
        (lambda org: forged({"org": org, "role": "superuser"}), "invalid"),
        (lambda org: forged({"role": "org_admin"}), "no organization"),
        (lambda org: forged({"org": org, "role": "provider"}), "no profile"),
        (lambda org: "not-a-jwt", "invalid"),
    ],
    ids=["expired", "not-yet-valid", "wrong-key", "alg-none", "wrong-issuer", "unknown-role", "no-org", "provider-without-profile", "garbage"],
)
async def test_bad_tokens_are_refused_with_the_reason(client, tenant, make_token, message):
    body = await gql(client, PROFILES, token=make_token(tenant.org_id))
    assert body["data"] is None
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert message in body["errors"][0]["message"]


async def test_no_credential_is_unauthenticated(client):
    body = await gql(client, PROFILES)
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_ingestion_key_cannot_read(client, tenant):
    body = await gql(client, PROFILES, token=tenant.ingestion_key)
    assert error_codes(body) == ["FORBIDDEN"]


async def test_revoked_or_unknown_key_is_refused(client, tenant):
    body = await gql(client, PROFILES, token="pgk_000000000000_" + "z" * 32)
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_token_for_a_deleted_tenant_sees_nothing(client, settings):
    ghost = issue_token(role=Role.ORG_ADMIN, organization_id=uuid.uuid4(), settings=settings)
    body = await gql(client, PROFILES, token=ghost)
    assert body["data"]["profiles"] == []


# -- the same tokens at websocket `connection_init` ------------------------------------------

WS_REFUSED = {
    "expired": (lambda t: forged({"org": t.org_id, "exp": int(time.time()) - 10}), "UNAUTHENTICATED"),
    "not-yet-valid": (lambda t: forged({"org": t.org_id, "nbf": int(time.time()) + 600}), "UNAUTHENTICATED"),
    "alg-none": (lambda t: unsigned({"org": t.org_id}), "UNAUTHENTICATED"),
    "wrong-key": (lambda t: forged({"org": t.org_id}, key="another-secret-" + "y" * 40), "UNAUTHENTICATED"),
    "wrong-issuer": (lambda t: forged({"org": t.org_id, "iss": "someone-else"}), "UNAUTHENTICATED"),
    "unknown-role": (lambda t: forged({"org": t.org_id, "role": "superuser"}), "UNAUTHENTICATED"),
    "role-without-tenant": (lambda t: forged({"role": "org_admin"}), "UNAUTHENTICATED"),
    "provider-without-profile": (lambda t: forged({"org": t.org_id, "role": "provider"}), "UNAUTHENTICATED"),
    "service-role": (lambda t: t.service_token, "FORBIDDEN"),
    "ingestion-key": (lambda t: t.ingestion_key, "FORBIDDEN"),
    "garbage": (lambda t: "not-a-jwt", "UNAUTHENTICATED"),
}


@pytest.mark.parametrize("case", list(WS_REFUSED))
async def test_connection_init_refuses_bad_tokens(app, tenant, case):
    """`on_ws_connect` is what both websocket subprotocols run for `connection_init`; the
    close codes and frames on the wire are tested in test_live.py."""
    from types import SimpleNamespace

    from strawberry.exceptions import ConnectionRejectionError

    from app.graphql import Context, PulsegraphGraphQL

    make_token, code = WS_REFUSED[case]
    graphql = PulsegraphGraphQL(schema=None)  # type: ignore[arg-type]
    for params in ({"authorization": f"Bearer {make_token(tenant)}"}, {"token": make_token(tenant)}):
        context = Context(request=SimpleNamespace(app=app), response=None, connection_params=params)  # type: ignore[arg-type]
        with pytest.raises(ConnectionRejectionError) as refused:
            await graphql.on_ws_connect(context)
        assert refused.value.payload["code"] == code, (case, refused.value.payload)


async def test_connection_init_accepts_readers(app, tenant):
    from types import SimpleNamespace

    from app.graphql import Context, PulsegraphGraphQL

    graphql = PulsegraphGraphQL(schema=None)  # type: ignore[arg-type]
    for token in (tenant.provider_token, tenant.org_admin_token, tenant.admin_token):
        context = Context(request=SimpleNamespace(app=app), response=None, connection_params={"authorization": f"Bearer {token}"})  # type: ignore[arg-type]
        assert await graphql.on_ws_connect(context) is None
        assert context.viewer.can_read
