"""Accounts as people use them: sign in, invite a colleague, hold a role, keep and revoke keys.

Everything goes through the public API (GraphQL and /track) of the real app on the real
database; setup that has no API of its own (the first admin, an expired session) uses the
services or SQL. Revocations are learned by every API process from the database; this
process's watcher polls several times a second, so refusals are awaited for at most a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.auth import Role
from app.database import connection
from app.services.accounts import members
from app.services.accounts.audit import Actor
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.tenants import Tenant

REVOCATION_BOUND = 1.0  # seconds: the promise every process keeps
PASSWORD = "correct horse battery 42"

LOGIN = """mutation($email: String!, $password: String!, $org: ID, $cookie: Boolean! = false) {
  login(email: $email, password: $password, organizationId: $org, cookie: $cookie) {
    user { id email } role organizationId sessionId accessToken accessTokenExpiresAt refreshToken csrfToken } }"""
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken role } }"
LOGOUT = "mutation { logout }"
ME = "query { me { user { email } memberships { organizationId role } isPlatformAdmin } viewer { role } }"
INVITE = """mutation($org: ID!, $email: String!, $role: MemberRole!) {
  inviteMember(organizationId: $org, email: $email, role: $role) { token emailSent invitation { id status role } } }"""
ACCEPT = """mutation($t: String!, $p: String!, $n: String! = "") {
  acceptInvitation(token: $t, password: $p, name: $n) { role accessToken user { email } } }"""
READ = "query { organizations { id } revenueSummary(range: {preset: LAST_30_DAYS}) { total { amountMinor } } }"
WRITE = """mutation { createCost(category: TOOLS, amountMinor: 100, currency: "EUR", date: "2026-01-05",
  description: "accounts test") { id } }"""
INGESTION_KEY = """mutation($org: ID!) { createIngestionKey(organizationId: $org, name: "beacon") { secret key { id hint } } }"""
REVOKE_INGESTION_KEY = "mutation($id: ID!) { revokeIngestionKey(id: $id) { revokedAt } }"
AUDIT = """query($org: ID, $action: String) { auditLog(organizationId: $org, action: $action) {
  at organizationId actor actorUserId address action target details } }"""
MEMBERS = "query($org: ID) { members(organizationId: $org) { userId email role } }"
CHANGE_ROLE = """mutation($org: ID!, $user: ID!, $role: MemberRole!) {
  changeMemberRole(organizationId: $org, userId: $user, role: $role) { role } }"""
REMOVE = "mutation($org: ID!, $user: ID!) { removeMember(organizationId: $org, userId: $user) }"
PERSONAL_KEY = """mutation($role: MemberRole) { createPersonalApiKey(name: "notebook", role: $role) {
  secret key { id hint role kind lastUsedAt } } }"""
PERSONAL_KEYS = "query { personalApiKeys { id name role lastUsedAt revokedAt } }"
REVOKE_PERSONAL_KEY = "mutation($id: ID!) { revokePersonalApiKey(id: $id) { revokedAt } }"


# -- helpers ----------------------------------------------------------------------------------


async def person(tenant: Tenant, role: Role = Role.ORG_ADMIN, *, password: str = PASSWORD, **extra: Any) -> str:
    """An account with a password and a role in the tenant's organization; its email."""
    email = f"{role.value.replace('_', '-')}-{uuid.uuid4().hex[:10]}@accounts.test"
    profile = tenant.profile.id if role is Role.PROVIDER else None
    await members.create_user(
        email=email, name="Test Person", password=password, organization_id=tenant.organization.id, role=role,
        profile_id=profile, actor=Actor("test"), **extra,
    )  # fmt: skip
    return email


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **variables: Any) -> dict[str, Any]:
    return (await gql_data(client, LOGIN, {"email": email, "password": password, **variables}, None))["login"]


async def refused_within(seconds: float, attempt: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until `attempt()` reports a refusal; fails past `seconds`."""
    started = time.monotonic()
    while not await attempt():
        assert time.monotonic() - started < seconds, f"still accepted after {seconds} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def token_refused(client: httpx.AsyncClient, token: str) -> Callable[[], Awaitable[bool]]:
    async def attempt() -> bool:
        return error_codes(await gql(client, ME, token=token)) == ["UNAUTHENTICATED"]

    return attempt


def client_from(app: Any, address: str) -> httpx.AsyncClient:
    """A client calling from its own address (the sign-in limiter counts per address)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://testserver")


# -- the story the issue tells ----------------------------------------------------------------


async def test_an_admin_invites_a_viewer_who_reads_but_cannot_write_then_a_revoked_key_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    admin = await sign_in(client, await person(tenant))
    assert admin["role"] == "org_admin" and admin["organizationId"] == tenant.org_id and admin["refreshToken"]
    token = admin["accessToken"]

    invited = (await gql_data(client, INVITE, {"org": tenant.org_id, "email": "Colleague@Example.test", "role": "VIEWER"}, token))
    invitation = invited["inviteMember"]
    assert invitation["emailSent"] is False and invitation["invitation"]["status"] == "PENDING"
    joined = (await gql_data(client, ACCEPT, {"t": invitation["token"], "p": "plum sunrise 1187", "n": "Col League"}, None))
    assert joined["acceptInvitation"]["role"] == "viewer"
    assert joined["acceptInvitation"]["user"]["email"] == "colleague@example.test"

    colleague = await sign_in(client, "colleague@example.test", "plum sunrise 1187")
    assert colleague["role"] == "viewer"
    read = await gql_data(client, READ, {}, colleague["accessToken"])
    assert [org["id"] for org in read["organizations"]] == [tenant.org_id]
    write = await gql(client, WRITE, token=colleague["accessToken"])
    assert error_codes(write) == ["FORBIDDEN"] and "viewers may read" in write["errors"][0]["message"]
    assert error_codes(await gql(client, INVITE, {"org": tenant.org_id, "email": "x@y.test", "role": "VIEWER"},
                                 token=colleague["accessToken"])) == ["FORBIDDEN"]  # fmt: skip

    made = (await gql_data(client, INGESTION_KEY, {"org": tenant.org_id}, token))["createIngestionKey"]
    beacon = {"Authorization": f"Bearer {made['secret']}"}
    assert (await client.post("/track", json={"type": "page"}, headers=beacon)).status_code == 200
    await gql_data(client, REVOKE_INGESTION_KEY, {"id": made["key"]["id"]}, token)

    async def track_refused() -> bool:
        return (await client.post("/track", json={"type": "page"}, headers=beacon)).status_code == 401

    await refused_within(REVOCATION_BOUND, track_refused)


# -- signing in ---------------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_get_the_same_answer(app: Any, tenant: Tenant) -> None:
    email = await person(tenant)
    async with client_from(app, "198.51.100.10") as client:
        wrong = await gql(client, LOGIN, {"email": email, "password": "not the password"})
        unknown = await gql(client, LOGIN, {"email": f"nobody-{uuid.uuid4().hex[:6]}@accounts.test", "password": PASSWORD})
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"] == "email or password is wrong"
    assert error_codes(wrong) == error_codes(unknown) == ["UNAUTHENTICATED"]


async def test_failed_sign_ins_are_limited_per_account_even_with_the_right_password(app: Any, tenant: Tenant, settings: Any) -> None:
    email = await person(tenant)
    async with client_from(app, "198.51.100.11") as client:
        for _ in range(settings.sign_in_failures_per_account):
            assert error_codes(await gql(client, LOGIN, {"email": email, "password": "guess"})) == ["UNAUTHENTICATED"]
        limited = await gql(client, LOGIN, {"email": email, "password": PASSWORD})
    assert error_codes(limited) == ["RATE_LIMITED"]
    assert 0 < limited["errors"][0]["extensions"]["retryAfterSeconds"] <= settings.sign_in_failure_window_seconds + 1
    async with client_from(app, "198.51.100.12") as elsewhere:  # the account is limited from every address
        assert error_codes(await gql(elsewhere, LOGIN, {"email": email, "password": PASSWORD})) == ["RATE_LIMITED"]


async def test_failed_sign_ins_are_limited_per_address_across_accounts(app: Any, tenant: Tenant, settings: Any) -> None:
    victim = await person(tenant)
    async with client_from(app, "198.51.100.13") as client:
        for n in range(settings.sign_in_failures_per_address):
            await gql(client, LOGIN, {"email": f"spray-{n}-{uuid.uuid4().hex[:6]}@accounts.test", "password": "guess"})
        assert error_codes(await gql(client, LOGIN, {"email": victim, "password": PASSWORD})) == ["RATE_LIMITED"]
    async with client_from(app, "198.51.100.14") as other:  # the victim still signs in from elsewhere
        assert (await sign_in(other, victim))["role"] == "org_admin"


async def test_a_member_cannot_sign_in_to_an_organization_they_do_not_belong_to(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    email = await person(tenant)
    body = await gql(client, LOGIN, {"email": email, "password": PASSWORD, "org": other_tenant.org_id})
    assert error_codes(body) == ["FORBIDDEN"] and body["errors"][0]["extensions"]["field"] == "organizationId"


async def test_the_access_token_names_the_person_and_is_short_lived(client: httpx.AsyncClient, tenant: Tenant, settings: Any) -> None:
    email = await person(tenant, Role.PROVIDER)
    signed_in = await sign_in(client, email)
    me = await gql_data(client, ME, {}, signed_in["accessToken"])
    assert me["me"]["user"]["email"] == email and me["viewer"]["role"] == "provider"
    assert me["me"]["memberships"] == [{"organizationId": tenant.org_id, "role": "PROVIDER"}]
    from datetime import datetime

    expires = datetime.fromisoformat(signed_in["accessTokenExpiresAt"])
    assert abs(expires.timestamp() - time.time() - settings.access_token_ttl_seconds) < 60


# -- refresh tokens ---------------------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(client: httpx.AsyncClient, tenant: Tenant) -> None:
    first = await sign_in(client, await person(tenant))
    second = (await gql_data(client, REFRESH, {"t": first["refreshToken"]}, None))["refreshToken"]
    assert second["refreshToken"] != first["refreshToken"] and second["accessToken"] != first["accessToken"]
    assert (await gql_data(client, ME, {}, second["accessToken"]))["viewer"]["role"] == "org_admin"

    replayed = await gql(client, REFRESH, {"t": first["refreshToken"]})
    assert error_codes(replayed) == ["UNAUTHENTICATED"] and "already used" in replayed["errors"][0]["message"]
    # the whole family is gone: the newest refresh token and every access token of the session
    assert error_codes(await gql(client, REFRESH, {"t": second["refreshToken"]})) == ["UNAUTHENTICATED"]
    await refused_within(REVOCATION_BOUND, token_refused(client, second["accessToken"]))
    await refused_within(REVOCATION_BOUND, token_refused(client, first["accessToken"]))
    async with connection() as conn:
        reason = await conn.fetchval("SELECT revoked_reason FROM auth_sessions WHERE id = $1", uuid.UUID(first["sessionId"]))
    assert reason == "refresh token reused"


async def test_tampered_and_expired_refresh_tokens_are_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    signed_in = await sign_in(client, await person(tenant))
    tampered = signed_in["refreshToken"][:-2] + ("AA" if not signed_in["refreshToken"].endswith("AA") else "BB")
    assert error_codes(await gql(client, REFRESH, {"t": tampered})) == ["UNAUTHENTICATED"]
    async with connection() as conn:
        await conn.execute("UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
                           uuid.UUID(signed_in["sessionId"]))  # fmt: skip
    expired = await gql(client, REFRESH, {"t": signed_in["refreshToken"]})
    assert error_codes(expired) == ["UNAUTHENTICATED"] and "sign in again" in expired["errors"][0]["message"]


async def test_logout_refuses_the_sessions_tokens_everywhere(client: httpx.AsyncClient, tenant: Tenant) -> None:
    signed_in = await sign_in(client, await person(tenant))
    other = await sign_in(client, await person(tenant))
    assert (await gql_data(client, LOGOUT, {}, signed_in["accessToken"]))["logout"] is True
    await refused_within(REVOCATION_BOUND, token_refused(client, signed_in["accessToken"]))
    assert error_codes(await gql(client, REFRESH, {"t": signed_in["refreshToken"]})) == ["UNAUTHENTICATED"]
    assert (await gql_data(client, ME, {}, other["accessToken"]))["viewer"]["role"] == "org_admin"  # another sign-in lives


# -- cookies for browsers -----------------------------------------------------------------------


async def test_a_cookie_session_reads_with_get_and_posts_only_with_its_csrf_token(app: Any, tenant: Tenant) -> None:
    email = await person(tenant)
    async with client_from(app, "198.51.100.20") as browser:
        response = await browser.post("/graphql", json={"query": LOGIN, "variables": {"email": email, "password": PASSWORD, "cookie": True}})
        signed_in = response.json()["data"]["login"]
        assert signed_in["accessToken"] is None and signed_in["refreshToken"] is None and signed_in["csrfToken"]
        session_cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("pulsegraph_session="))
        assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie and "Path=/" in session_cookie
        assert browser.cookies.get("pulsegraph_csrf") == signed_in["csrfToken"]

        read = await browser.get("/graphql", params={"query": "{ viewer { role } }"}, headers={"Accept": "application/json"})
        assert read.json()["data"]["viewer"]["role"] == "org_admin"
        forged = (await browser.post("/graphql", json={"query": "{ viewer { role } }"})).json()
        assert error_codes(forged) == ["FORBIDDEN"] and "CSRF" in forged["errors"][0]["message"]
        wrong = (await browser.post("/graphql", json={"query": "{ viewer { role } }"}, headers={"X-CSRF-Token": "0" * 40})).json()
        assert error_codes(wrong) == ["FORBIDDEN"]
        headers = {"X-CSRF-Token": signed_in["csrfToken"]}
        assert (await browser.post("/graphql", json={"query": "{ viewer { role } }"}, headers=headers)).json()["data"]["viewer"]["role"] == "org_admin"

        out = await browser.post("/graphql", json={"query": LOGOUT}, headers=headers)
        assert out.json()["data"]["logout"] is True
        assert any(h.startswith("pulsegraph_session=") and "Max-Age=0" in h for h in out.headers.get_list("set-cookie"))
    async with client_from(app, "198.51.100.21") as thief:  # the old cookie, replayed after logout
        thief.cookies.set("pulsegraph_session", session_cookie.split(";")[0].split("=", 1)[1])

        async def replay_refused() -> bool:
            body = (await thief.get("/graphql", params={"query": "{ viewer { role } }"})).json()
            return error_codes(body) == ["UNAUTHENTICATED"]

        await refused_within(REVOCATION_BOUND, replay_refused)


# -- invitations and passwords ----------------------------------------------------------------


async def test_invitation_tokens_work_once_and_only_until_they_expire_or_are_revoked(client: httpx.AsyncClient, tenant: Tenant) -> None:
    token = tenant.org_admin_token

    async def invite(email: str) -> dict[str, Any]:
        return (await gql_data(client, INVITE, {"org": tenant.org_id, "email": email, "role": "VIEWER"}, token))["inviteMember"]

    once = await invite("once@accounts.test")
    await gql_data(client, ACCEPT, {"t": once["token"], "p": "meadow lantern 3391"}, None)
    again = await gql(client, ACCEPT, {"t": once["token"], "p": "meadow lantern 3391"})
    assert error_codes(again) == ["BAD_USER_INPUT"] and again["errors"][0]["extensions"]["field"] == "token"

    late = await invite("late@accounts.test")
    async with connection() as conn:
        await conn.execute("UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1",
                           uuid.UUID(late["invitation"]["id"]))  # fmt: skip
    assert error_codes(await gql(client, ACCEPT, {"t": late["token"], "p": "meadow lantern 3391"})) == ["BAD_USER_INPUT"]

    first = await invite("twice@accounts.test")
    second = await invite("twice@accounts.test")  # a new invitation replaces the pending one
    assert error_codes(await gql(client, ACCEPT, {"t": first["token"], "p": "meadow lantern 3391"})) == ["BAD_USER_INPUT"]
    revoked = await gql_data(client, "mutation($id: ID!) { revokeInvitation(id: $id) { status } }", {"id": second["invitation"]["id"]}, token)
    assert revoked["revokeInvitation"]["status"] == "REVOKED"
    assert error_codes(await gql(client, ACCEPT, {"t": second["token"], "p": "meadow lantern 3391"})) == ["BAD_USER_INPUT"]
    statuses = await gql_data(client, "query { invitations { email status } }", {}, token)
    assert {(i["email"], i["status"]) for i in statuses["invitations"]} == {
        ("once@accounts.test", "ACCEPTED"), ("late@accounts.test", "EXPIRED"),
        ("twice@accounts.test", "REVOKED"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("password", "rule"),
    [("short 1", "length"), ("password123", "common"), ("qwertyqwerty", "common"), ("weak-newbie-2026", "personal")],
)
async def test_weak_passwords_are_refused_naming_the_rule(client: httpx.AsyncClient, tenant: Tenant, password: str, rule: str) -> None:
    invited = await gql_data(client, INVITE, {"org": tenant.org_id, "email": f"newbie-{uuid.uuid4().hex[:6]}@accounts.test",
                                              "role": "VIEWER"}, tenant.org_admin_token)  # fmt: skip
    body = await gql(client, ACCEPT, {"t": invited["inviteMember"]["token"], "p": password})
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["rule"] == rule and body["errors"][0]["extensions"]["field"] == "password"
    # nothing was half-written: the invitation still works with a good password
    done = await gql(client, ACCEPT, {"t": invited["inviteMember"]["token"], "p": "granite ferry 5520"})
    assert done.get("errors") is None, done


async def test_a_password_reset_works_once_and_ends_every_session(client: httpx.AsyncClient, tenant: Tenant) -> None:
    email = await person(tenant, Role.VIEWER)
    signed_in = await sign_in(client, email)
    [member] = [m for m in (await gql_data(client, MEMBERS, {}, tenant.org_admin_token))["members"] if m["email"] == email]
    reset = await gql_data(client, "mutation($u: ID!) { createPasswordReset(userId: $u) { token emailSent } }",
                           {"u": member["userId"]}, tenant.org_admin_token)  # fmt: skip
    use = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }"
    assert (await gql_data(client, use, {"t": reset["createPasswordReset"]["token"], "p": "harbor violet 7712"}, None))["resetPassword"]
    assert error_codes(await gql(client, use, {"t": reset["createPasswordReset"]["token"], "p": "harbor violet 7713"})) == ["BAD_USER_INPUT"]
    await refused_within(REVOCATION_BOUND, token_refused(client, signed_in["accessToken"]))
    assert error_codes(await gql(client, LOGIN, {"email": email, "password": PASSWORD})) == ["UNAUTHENTICATED"]
    assert (await sign_in(client, email, "harbor violet 7712"))["role"] == "viewer"


# -- roles, removal and keys --------------------------------------------------------------------


async def user_id_of(client: httpx.AsyncClient, tenant: Tenant, email: str) -> str:
    listed = (await gql_data(client, MEMBERS, {}, tenant.org_admin_token))["members"]
    return next(m["userId"] for m in listed if m["email"] == email)


async def test_a_role_change_ends_the_members_sessions_and_the_keys_it_no_longer_grants(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    email = await person(tenant)
    signed_in = await sign_in(client, email)
    admin_key = (await gql_data(client, PERSONAL_KEY, {}, signed_in["accessToken"]))["createPersonalApiKey"]
    viewer_key = (await gql_data(client, PERSONAL_KEY, {"role": "VIEWER"}, signed_in["accessToken"]))["createPersonalApiKey"]
    assert (admin_key["key"]["role"], viewer_key["key"]["role"]) == ("org_admin", "viewer")

    user = await user_id_of(client, tenant, email)
    changed = await gql_data(client, CHANGE_ROLE, {"org": tenant.org_id, "user": user, "role": "VIEWER"}, tenant.org_admin_token)
    assert changed["changeMemberRole"]["role"] == "VIEWER"
    await refused_within(REVOCATION_BOUND, token_refused(client, signed_in["accessToken"]))
    await refused_within(REVOCATION_BOUND, token_refused(client, admin_key["secret"]))
    assert (await gql_data(client, ME, {}, viewer_key["secret"]))["viewer"]["role"] == "viewer"  # still granted
    assert (await sign_in(client, email))["role"] == "viewer"

    audit = (await gql_data(client, AUDIT, {"action": "member.role_changed"}, tenant.org_admin_token))["auditLog"]
    assert [(e["target"], e["details"]) for e in audit] == [(user, {"from": "org_admin", "to": "viewer"})]


async def test_the_last_admin_cannot_be_demoted_or_removed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    only_admin = str(tenant.users["org_admin"])
    demote = await gql(client, CHANGE_ROLE, {"org": tenant.org_id, "user": only_admin, "role": "VIEWER"}, token=tenant.org_admin_token)
    assert error_codes(demote) == ["BAD_USER_INPUT"] and "last admin" in demote["errors"][0]["message"]
    remove = await gql(client, REMOVE, {"org": tenant.org_id, "user": only_admin}, token=tenant.org_admin_token)
    assert error_codes(remove) == ["BAD_USER_INPUT"]


async def test_a_removed_members_tokens_and_keys_stop_working_at_once(client: httpx.AsyncClient, tenant: Tenant) -> None:
    email = await person(tenant, Role.VIEWER)
    signed_in = await sign_in(client, email)
    key = (await gql_data(client, PERSONAL_KEY, {}, signed_in["accessToken"]))["createPersonalApiKey"]
    assert (await gql_data(client, READ, {}, key["secret"]))["organizations"]
    user = await user_id_of(client, tenant, email)
    assert (await gql_data(client, REMOVE, {"org": tenant.org_id, "user": user}, tenant.org_admin_token))["removeMember"]
    await refused_within(REVOCATION_BOUND, token_refused(client, signed_in["accessToken"]))
    await refused_within(REVOCATION_BOUND, token_refused(client, key["secret"]))
    assert error_codes(await gql(client, REFRESH, {"t": signed_in["refreshToken"]})) == ["UNAUTHENTICATED"]
    assert error_codes(await gql(client, LOGIN, {"email": email, "password": PASSWORD})) == ["FORBIDDEN"]


async def test_personal_keys_are_shown_once_stored_hashed_listed_with_last_use_and_revoked(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    signed_in = await sign_in(client, await person(tenant, Role.VIEWER))
    made = (await gql_data(client, PERSONAL_KEY, {}, signed_in["accessToken"]))["createPersonalApiKey"]
    assert made["secret"].startswith(made["key"]["hint"].removesuffix("...")) and made["key"]["hint"].startswith("pga_")
    async with connection() as conn:
        stored = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", uuid.UUID(made["key"]["id"]))
    assert made["secret"] not in str(dict(stored)) and len(stored["key_hash"]) == 64

    assert (await gql_data(client, READ, {}, made["secret"]))["organizations"]
    assert error_codes(await gql(client, WRITE, token=made["secret"])) == ["FORBIDDEN"]  # a viewer's key reads only
    listed = (await gql_data(client, PERSONAL_KEYS, {}, signed_in["accessToken"]))["personalApiKeys"]
    assert [(k["name"], k["role"], k["lastUsedAt"] is not None) for k in listed] == [("notebook", "viewer", True)]
    too_much = await gql(client, PERSONAL_KEY, {"role": "ORG_ADMIN"}, token=signed_in["accessToken"])
    assert error_codes(too_much) == ["BAD_USER_INPUT"] and too_much["errors"][0]["extensions"]["field"] == "role"

    other = await sign_in(client, await person(tenant, Role.VIEWER))  # someone else's key is not theirs to revoke
    assert error_codes(await gql(client, REVOKE_PERSONAL_KEY, {"id": made["key"]["id"]}, token=other["accessToken"])) == ["NOT_FOUND"]
    await gql_data(client, REVOKE_PERSONAL_KEY, {"id": made["key"]["id"]}, signed_in["accessToken"])
    await refused_within(REVOCATION_BOUND, token_refused(client, made["secret"]))


async def test_service_tokens_publish_until_revoked(client: httpx.AsyncClient, tenant: Tenant) -> None:
    made = (await gql_data(client, """mutation($org: ID!) { createServiceToken(organizationId: $org, name: "billing") {
      secret key { id kind role } } }""", {"org": tenant.org_id}, tenant.org_admin_token))["createServiceToken"]  # fmt: skip
    assert made["secret"].startswith("pgs_") and (made["key"]["kind"], made["key"]["role"]) == ("SERVICE", "service")
    publish = """mutation($id: String!) { publishDomainEvents(events: [{eventId: $id, type: AFFILIATE_COMMISSION,
      amountMinor: 100, currency: "EUR"}]) { accepted } }"""

    async def refused() -> bool:
        body = await gql(client, publish, {"id": uuid.uuid4().hex}, token=made["secret"])
        if error_codes(body) == ["UNAUTHENTICATED"]:
            return True
        assert body["data"]["publishDomainEvents"]["accepted"] == 1, body
        return False

    assert not await refused()
    await gql_data(client, "mutation($id: ID!) { revokeServiceToken(id: $id) { revokedAt } }", {"id": made["key"]["id"]},
                   tenant.org_admin_token)  # fmt: skip
    await refused_within(REVOCATION_BOUND, refused)
    listed = (await gql_data(client, "query { serviceTokens { id revokedAt lastUsedAt } }", {}, tenant.org_admin_token))
    assert [(k["id"], k["revokedAt"] is not None, k["lastUsedAt"] is not None) for k in listed["serviceTokens"]] == [
        (made["key"]["id"], True, True)
    ]


# -- audit ------------------------------------------------------------------------------------


async def test_the_audit_log_records_who_did_what_from_where_for_its_organization_only(
    app: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    email = await person(tenant)
    async with client_from(app, "198.51.100.30") as client:
        await gql(client, LOGIN, {"email": email, "password": "nope nope nope"})
        signed_in = await sign_in(client, email)
        token = signed_in["accessToken"]
        key = (await gql_data(client, INGESTION_KEY, {"org": tenant.org_id}, token))["createIngestionKey"]
        await gql_data(client, REVOKE_INGESTION_KEY, {"id": key["key"]["id"]}, token)
        await gql_data(client, INVITE, {"org": tenant.org_id, "email": "audited@accounts.test", "role": "VIEWER"}, token)
        entries = (await gql_data(client, AUDIT, {}, token))["auditLog"]
    mine = [(e["action"], e["target"], e["address"]) for e in entries if e["address"] == "198.51.100.30"]
    assert mine == [
        ("invitation.created", "audited@accounts.test", "198.51.100.30"),
        ("key.revoked", key["key"]["id"], "198.51.100.30"),
        ("key.created", key["key"]["id"], "198.51.100.30"),
        ("sign_in", email, "198.51.100.30"),
        ("sign_in.failed", email, "198.51.100.30"),
    ]
    user_id = signed_in["user"]["id"]
    assert all(e["actorUserId"] == user_id for e in entries if e["action"] in ("key.created", "invitation.created"))
    assert {e["organizationId"] for e in entries} == {tenant.org_id}

    async with client_from(app, "198.51.100.31") as outsider:
        foreign = await gql(outsider, AUDIT, {"org": tenant.org_id}, token=other_tenant.org_admin_token)
        assert error_codes(foreign) == ["NOT_FOUND"]
        theirs = (await gql_data(outsider, AUDIT, {}, other_tenant.org_admin_token))["auditLog"]
        assert all(e["organizationId"] == other_tenant.org_id for e in theirs)
        platform = (await gql_data(outsider, AUDIT, {"org": tenant.org_id}, tenant.admin_token))["auditLog"]
        assert [e["action"] for e in platform][:2] == ["invitation.created", "key.revoked"]
