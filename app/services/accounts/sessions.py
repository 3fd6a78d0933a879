"""Signing in and out: access tokens, rotating refresh tokens, and browsers' session cookies.

A sign-in is a session row. API clients get a short-lived access token (the JWT every request
already carries, now naming its user and session) and a refresh token; each refresh marks
its token used and hands out the next one, and a used token presented again (stolen, or
replayed by someone who copied it) revokes the whole session. Browsers get an HttpOnly
session cookie instead, and send the session's CSRF token in a header with every POST.

Revoking a session (sign-out, removal from the organization, a role change, a replayed
refresh token) refuses its cookie and every access token minted for it on every API process
within a second (app.revocation).

A failed sign-in answers the same for an unknown email and a wrong password, takes as long,
and counts against both the account and the address; past the limits the next attempts are
refused before the password is even checked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from app.auth import (
    SESSION_COOKIE_PREFIX,
    Role,
    Viewer,
    csrf_token_for,
    hash_key,
    mint_token,
    new_secret_token,
)
from app.database import connection, transaction
from app.errors import BadInput, Forbidden, RateLimited, Unauthenticated
from app.revocation import SESSION, TOKEN, record_revocation
from app.services.accounts import audit
from app.services.accounts.audit import Actor
from app.services.accounts.passwords import hash_password, needs_rehash, verify_password
from app.settings import Settings

REFRESH_PREFIX = "pgr_"
WRONG = "email or password is wrong"
ENDED = "session has ended; sign in again"


@dataclass(frozen=True)
class Membership:
    organization_id: uuid.UUID
    role: Role
    profile_id: uuid.UUID | None


@dataclass(frozen=True)
class SignedIn:
    """What a sign-in or a refresh hands back. Cookie sessions carry `cookie` and
    `csrf_token` instead of the two tokens."""

    user_id: uuid.UUID
    email: str
    name: str
    session_id: uuid.UUID
    session_expires_at: datetime
    role: Role
    organization_id: uuid.UUID | None
    profile_id: uuid.UUID | None
    access_token: str | None = None
    access_token_expires_at: datetime | None = None
    refresh_token: str | None = None
    cookie: str | None = None
    csrf_token: str | None = None


def normalized_email(email: str, *, field: str = "email") -> str:
    value = email.strip().lower()
    if not value or "@" not in value or len(value) > 320 or any(c.isspace() or c == "\x00" for c in value):
        raise BadInput("email must be an address like name@example.com", field=field)
    return value


async def sign_in(
    *, email: str, password: str, organization_id: uuid.UUID | None = None, cookie: bool = False,
    address: str | None, user_agent: str | None, settings: Settings,
) -> SignedIn:  # fmt: skip
    email = normalized_email(email)
    await _refuse_while_limited(email=email, address=address, settings=settings)
    user = await _user_by_email(email)
    if user is None or not verify_password(user["password_hash"], password):
        await _record_failure(email=email, user=user, organization_id=organization_id, address=address)
        raise Unauthenticated(WRONG)
    membership = await _membership_to_use(user, organization_id)
    async with transaction() as conn:
        signed_in = await _open_session(
            conn, user=user, membership=membership, cookie=cookie, address=address, user_agent=user_agent, settings=settings
        )
        await conn.execute("UPDATE users SET last_sign_in_at = now() WHERE id = $1", user["id"])
        if needs_rehash(user["password_hash"]):
            await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user["id"], hash_password(password))
        await audit.record(
            conn, action=audit.SIGN_IN, actor=Actor(f"user:{user['id']}", user["id"], address),
            organization_id=membership.organization_id if membership else None, target=email,
            details={"session": str(signed_in.session_id), "kind": "cookie" if cookie else "token", "role": signed_in.role.value},
        )  # fmt: skip
    return signed_in


async def _refuse_while_limited(*, email: str, address: str | None, settings: Settings) -> None:
    window = settings.sign_in_failure_window_seconds
    recent = await audit.recent_failures(email=email, address=address, window_seconds=window)
    for count, first, limit in (
        (recent.by_email, recent.first_by_email, settings.sign_in_failures_per_account),
        (recent.by_address, recent.first_by_address, settings.sign_in_failures_per_address),
    ):
        if count >= limit and first is not None:
            wait = max(1, int((first + timedelta(seconds=window) - recent.now).total_seconds()) + 1)
            raise RateLimited(f"too many failed sign-ins; try again in {wait} s", retryAfterSeconds=wait)


USER_BY_EMAIL = "SELECT id, email, name, password_hash, is_platform_admin FROM users WHERE email = $1"
MEMBERSHIPS = """
SELECT organization_id, role, profile_id FROM memberships WHERE user_id = $1 ORDER BY created_at, organization_id
"""


async def _user_by_email(email: str) -> asyncpg.Record | None:
    async with connection() as conn:
        return await conn.fetchrow(USER_BY_EMAIL, email)


async def memberships_of(user_id: uuid.UUID) -> list[Membership]:
    async with connection() as conn:
        rows = await conn.fetch(MEMBERSHIPS, user_id)
    return [Membership(row["organization_id"], Role(row["role"]), row["profile_id"]) for row in rows]


async def _record_failure(
    *, email: str, user: asyncpg.Record | None, organization_id: uuid.UUID | None, address: str | None
) -> None:
    """Counted by the limiter; shown to the admins of the organization the account belongs to."""
    org = None
    if user is not None:
        orgs = [m.organization_id for m in await memberships_of(user["id"])]
        org = organization_id if organization_id in orgs else (orgs[0] if orgs else None)
    await audit.record(None, action=audit.SIGN_IN_FAILED, actor=Actor(email, None, address), organization_id=org, target=email)


async def _membership_to_use(user: asyncpg.Record, organization_id: uuid.UUID | None) -> Membership | None:
    """The organization the sign-in acts for: the one asked for, else the user's first;
    None for a platform admin who names none."""
    memberships = await memberships_of(user["id"])
    if organization_id is not None:
        found = next((m for m in memberships if m.organization_id == organization_id), None)
        if found is None:
            raise Forbidden("you are not a member of this organization", field="organizationId")
        return found
    if user["is_platform_admin"]:
        return None
    if not memberships:
        raise Forbidden("this account is not a member of any organization yet")
    return memberships[0]


async def _open_session(
    conn: asyncpg.Connection, *, user: asyncpg.Record, membership: Membership | None, cookie: bool,
    address: str | None, user_agent: str | None, settings: Settings,
) -> SignedIn:  # fmt: skip
    session_id = uuid.uuid4()
    expires = datetime.now(UTC) + timedelta(seconds=settings.session_ttl_seconds)
    cookie_value, secret_hash = new_secret_token(SESSION_COOKIE_PREFIX, session_id) if cookie else (None, None)
    await conn.execute(
        """INSERT INTO auth_sessions (id, user_id, organization_id, kind, secret_hash, address, user_agent, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        session_id, user["id"], membership.organization_id if membership else None, "cookie" if cookie else "token",
        secret_hash, address, (user_agent or "")[:512] or None, expires,
    )  # fmt: skip
    role = membership.role if membership else Role.ADMIN
    signed_in = SignedIn(
        user_id=user["id"], email=user["email"], name=user["name"], session_id=session_id, session_expires_at=expires,
        role=role, organization_id=membership.organization_id if membership else None,
        profile_id=membership.profile_id if membership else None,
    )  # fmt: skip
    if cookie:
        return replace(signed_in, cookie=cookie_value, csrf_token=csrf_token_for(session_id, settings))
    return await _with_tokens(conn, signed_in, settings)


async def _with_tokens(conn: asyncpg.Connection, signed_in: SignedIn, settings: Settings) -> SignedIn:
    """A new access token and the session's next refresh token."""
    refresh, refresh_hash = _new_refresh_token()
    await conn.execute("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", refresh_hash, signed_in.session_id)
    issued = mint_token(
        role=signed_in.role, organization_id=signed_in.organization_id, profile_id=signed_in.profile_id,
        subject=f"user:{signed_in.user_id}", ttl_seconds=settings.access_token_ttl_seconds, settings=settings,
        user_id=signed_in.user_id, session_id=str(signed_in.session_id),
    )  # fmt: skip
    return replace(
        signed_in, access_token=issued.token, access_token_expires_at=datetime.fromtimestamp(issued.expires_at, UTC),
        refresh_token=refresh,
    )  # fmt: skip


def _new_refresh_token() -> tuple[str, str]:
    raw, _ = new_secret_token(REFRESH_PREFIX, uuid.uuid4())
    return raw, hash_key(raw)


REFRESH_ROW = """
SELECT r.used_at, s.id AS session_id, s.user_id, s.organization_id, s.expires_at, s.revoked_at,
       u.email, u.name, u.is_platform_admin
FROM refresh_tokens r JOIN auth_sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
WHERE r.token_hash = $1
FOR UPDATE OF r, s
"""


async def refresh(*, refresh_token: str, address: str | None, settings: Settings) -> SignedIn:
    """The next access and refresh tokens of a live session; a reused token ends the session."""
    token_hash = hash_key(refresh_token.strip())
    reused = False
    async with transaction() as conn:
        row = await conn.fetchrow(REFRESH_ROW, token_hash)
        if row is None:
            raise Unauthenticated("refresh token is invalid", field="refreshToken")
        if row["revoked_at"] is not None or row["expires_at"] <= datetime.now(UTC):
            raise Unauthenticated(ENDED, field="refreshToken")
        if row["used_at"] is not None:
            reused = True
            await revoke_session(conn, session_id=row["session_id"], reason="refresh token reused", revoked_by="reuse", settings=settings)
            await audit.record(
                conn, action=audit.REFRESH_REUSED, actor=Actor(f"user:{row['user_id']}", row["user_id"], address),
                organization_id=row["organization_id"], target=str(row["session_id"]),
            )  # fmt: skip
        else:
            signed_in = await _refreshed(conn, row, token_hash, settings)
    if reused:  # after the commit: the revocation stands although this call is refused
        raise Unauthenticated("refresh token was already used; the session is revoked, sign in again", field="refreshToken")
    return signed_in


async def _refreshed(conn: asyncpg.Connection, row: asyncpg.Record, token_hash: str, settings: Settings) -> SignedIn:
    membership = None
    if row["organization_id"] is not None:
        found = await conn.fetchrow(
            "SELECT role, profile_id FROM memberships WHERE organization_id = $1 AND user_id = $2",
            row["organization_id"], row["user_id"],
        )  # fmt: skip
        if found is None:
            raise Unauthenticated("you are no longer a member of this organization", field="refreshToken")
        membership = Membership(row["organization_id"], Role(found["role"]), found["profile_id"])
    elif not row["is_platform_admin"]:
        raise Unauthenticated(ENDED, field="refreshToken")
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash)
    await conn.execute("UPDATE auth_sessions SET last_used_at = now() WHERE id = $1", row["session_id"])
    signed_in = SignedIn(
        user_id=row["user_id"], email=row["email"], name=row["name"], session_id=row["session_id"],
        session_expires_at=row["expires_at"], role=membership.role if membership else Role.ADMIN,
        organization_id=row["organization_id"], profile_id=membership.profile_id if membership else None,
    )  # fmt: skip
    return await _with_tokens(conn, signed_in, settings)


async def sign_out(*, viewer: Viewer, refresh_token: str | None, address: str | None, settings: Settings) -> bool:
    """End the caller's session (its token or cookie), or the one a refresh token names; a
    command-line token without a session is revoked itself. False if nothing was live."""
    if not viewer.is_authenticated and refresh_token is None:
        raise Unauthenticated("sign in first, or send the refresh token to end its session")
    async with transaction() as conn:
        session_id = uuid.UUID(viewer.session_id) if viewer.session_id else None
        if session_id is None and refresh_token is not None:
            session_id = await conn.fetchval(
                "SELECT session_id FROM refresh_tokens WHERE token_hash = $1", hash_key(refresh_token.strip())
            )
            if session_id is None:
                raise Unauthenticated("refresh token is invalid", field="refreshToken")
        if session_id is not None:
            ended = await revoke_session(conn, session_id=session_id, reason="signed out", revoked_by=viewer.subject, settings=settings)
        elif viewer.token_id is not None:
            ended = await record_revocation(conn, kind=TOKEN, credential_id=viewer.token_id, expires_at=None, revoked_by=viewer.subject)
        else:
            raise BadInput("this credential is a key, not a sign-in: revoke the key instead")
        await audit.record(
            conn, action=audit.SIGN_OUT, actor=Actor.of(viewer, address), organization_id=viewer.organization_id,
            target=str(session_id) if session_id else viewer.token_id,
        )  # fmt: skip
    return ended


async def revoke_session(
    conn: asyncpg.Connection, *, session_id: uuid.UUID, reason: str, revoked_by: str, settings: Settings
) -> bool:
    """Mark the session revoked and tell every API process; False if it already was."""
    expires = await conn.fetchval(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING expires_at",
        session_id, reason,
    )  # fmt: skip
    if expires is None:
        return False
    # access tokens minted for it live at most access_token_ttl past the session's own end
    until = expires + timedelta(seconds=settings.access_token_ttl_seconds)
    await record_revocation(conn, kind=SESSION, credential_id=str(session_id), expires_at=until, revoked_by=revoked_by)
    return True


async def revoke_sessions_of(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, organization_id: uuid.UUID | None, reason: str, revoked_by: str,
    settings: Settings, except_session: str | None = None,
) -> int:  # fmt: skip
    """Every live session of a user (in one organization, or everywhere), but the one kept."""
    ids = await conn.fetch(
        """SELECT id FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
           AND ($2::uuid IS NULL OR organization_id = $2) AND ($3::uuid IS NULL OR id <> $3)""",
        user_id, organization_id, uuid.UUID(except_session) if except_session else None,
    )  # fmt: skip
    for row in ids:
        await revoke_session(conn, session_id=row["id"], reason=reason, revoked_by=revoked_by, settings=settings)
    return len(ids)
