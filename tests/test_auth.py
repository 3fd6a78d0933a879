"""Credentials: what each kind of token may do, and every way a token can be wrong."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from app import auth
from app.auth import Role, issue_token, viewer_from_token
from app.errors import Unauthenticated
from tests.support.graphql import error_codes, gql
from tests.support.settings import TEST_JWT_SECRET, settings_with

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


# -- verified tokens are remembered --------------------------------------------------------


@pytest.fixture
def token_cache(monkeypatch):
    """An empty cache of verified tokens; once a token is in it, PyJWT is no longer asked."""
    monkeypatch.setattr(auth, "_token_cache", {})
    return auth._token_cache


def verification_refused(monkeypatch) -> None:
    """From now on any token that is verified again fails, so an answer came from the cache."""

    def refuse(*args, **kwargs):
        raise jwt.InvalidSignatureError("verified again")

    monkeypatch.setattr(auth.jwt, "decode", refuse)


def tampered(token: str, **claims) -> str:
    """`token` with its payload rewritten and its signature kept."""
    header, payload, signature = token.split(".")
    decoded = jwt.decode(token, options={"verify_signature": False})
    rewritten = jwt.utils.base64url_encode(json.dumps({**decoded, **claims}).encode()).decode()
    return ".".join((header, rewritten, signature))


async def test_a_repeated_token_gives_the_same_viewer(settings, tenant, token_cache):
    first = viewer_from_token(tenant.provider_token, settings)
    again = viewer_from_token(tenant.provider_token, settings)
    assert again == first
    assert (first.role, str(first.profile_id)) == (Role.PROVIDER, tenant.profile_id)
    assert len(token_cache) == 1


async def test_a_cached_token_is_refused_once_it_expires(settings, tenant, token_cache, monkeypatch):
    token = forged({"org": tenant.org_id})
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    viewer_from_token(token, settings)
    verification_refused(monkeypatch)
    monkeypatch.setattr(auth, "_clock", lambda: expires - 0.001)
    assert viewer_from_token(token, settings).organization_id == uuid.UUID(tenant.org_id)
    monkeypatch.setattr(auth, "_clock", lambda: expires)  # PyJWT: expired when exp <= now
    with pytest.raises(Unauthenticated, match="expired"):
        viewer_from_token(token, settings)
    assert token_cache == {}  # and so verified again next time, by PyJWT on the real clock


async def test_refused_tokens_are_not_remembered(settings, tenant, token_cache):
    valid = forged({"org": tenant.org_id})
    viewer_from_token(valid, settings)
    header, payload, signature = valid.split(".")
    refused = [
        tampered(valid, role="admin"),
        ".".join((header, payload, signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:])),
        forged({"org": tenant.org_id}, key="another-secret-" + "y" * 40),
        forged({"org": tenant.org_id, "exp": int(time.time()) - 10}),
        forged({"org": tenant.org_id, "nbf": int(time.time()) + 600}),
        unsigned({"org": tenant.org_id}),
    ]
    for token in refused:
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                viewer_from_token(token, settings)
    assert [key[2] for key in token_cache] == [valid]


async def test_another_secret_refuses_a_token_the_old_one_cached(settings, tenant, token_cache):
    viewer_from_token(tenant.org_admin_token, settings)
    rotated = settings_with(settings, jwt_secret="rotated-secret-" + "z" * 40)
    with pytest.raises(Unauthenticated, match="invalid"):
        viewer_from_token(tenant.org_admin_token, rotated)
    reissued = settings_with(settings, jwt_issuer="someone-else")
    with pytest.raises(Unauthenticated, match="invalid"):
        viewer_from_token(tenant.org_admin_token, reissued)
    assert viewer_from_token(tenant.org_admin_token, settings).role is Role.ORG_ADMIN


async def test_the_token_cache_forgets_the_oldest_when_full(settings, tenant, token_cache, monkeypatch):
    monkeypatch.setattr(auth, "TOKEN_CACHE_SIZE", 3)
    tokens = [forged({"org": tenant.org_id, "sub": f"user-{i}"}) for i in range(5)]
    for token in tokens:
        viewer_from_token(token, settings)
    assert [key[2] for key in token_cache] == tokens[2:]
    verification_refused(monkeypatch)
    assert viewer_from_token(tokens[-1], settings).subject == "user-4"
    with pytest.raises(Unauthenticated, match="invalid"):
        viewer_from_token(tokens[0], settings)  # forgotten: verified again


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


# -- revocation: learned by the process's watcher, checked on every use ------------------------


@pytest.fixture
def revoked_tokens(monkeypatch):
    """This process's set of revoked tokens, emptied again after the test."""
    monkeypatch.setattr(auth, "_revoked_tokens", {})
    return auth._revoked_tokens


async def test_a_cached_token_is_refused_as_soon_as_its_revocation_is_learned(settings, tenant, token_cache, revoked_tokens, monkeypatch):
    viewer = viewer_from_token(tenant.org_admin_token, settings)
    other = viewer_from_token(tenant.provider_token, settings)
    verification_refused(monkeypatch)  # from here on, answers come from the cache
    assert viewer_from_token(tenant.org_admin_token, settings) == viewer
    auth.learn_revoked_token(viewer.token_id, time.time() + 600)
    with pytest.raises(Unauthenticated, match="revoked"):
        viewer_from_token(tenant.org_admin_token, settings)
    assert viewer_from_token(tenant.provider_token, settings) == other


async def test_a_token_minted_without_an_id_is_revoked_by_the_token_itself(app, client, settings, tenant, revoked_tokens):
    """Tokens minted before tokens carried a `jti` are named by a hash of the whole token."""
    from app.revocation import revoke_token

    legacy = forged({"org": tenant.org_id, "sub": "minted-before-jti"})
    assert "jti" not in jwt.decode(legacy, options={"verify_signature": False})
    body = await gql(client, VIEWER, token=legacy)
    assert body["data"]["viewer"]["organizationId"] == tenant.org_id
    revoked = await revoke_token(token=legacy, settings=settings, revoked_by="test")
    assert revoked.token_id.startswith("sha256:") and not revoked.already_revoked
    await app.state.revocations.poll()
    body = await gql(client, VIEWER, token=legacy)
    assert error_codes(body) == ["UNAUTHENTICATED"] and "revoked" in body["errors"][0]["message"]
    assert (await gql(client, VIEWER, token=tenant.org_admin_token))["data"]["viewer"]["role"] == "org_admin"


async def test_past_revocations_are_forgotten(revoked_tokens):
    auth.learn_revoked_token("gone", time.time() - 1)
    auth.learn_revoked_token("kept", time.time() + 600)
    auth.learn_revoked_token("unknown-expiry", None)
    assert auth.forget_past_revocations(time.time()) == 1
    assert set(revoked_tokens) == {"kept", "unknown-expiry"}
